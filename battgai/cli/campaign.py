"""``python -m battgai campaign --conditions ... --rounds R --per-round N --relax K [--out DIR]``.

Without ``--out`` the campaign becomes a new run of the run store (``BATTGAI_HOME``, task
``materials.campaign``, reopened by the Campaigns page); ``--out`` a run folder resumes that run, any
other folder holds a campaign of its own. Running the same command again continues at the first
round not committed (see :mod:`battgai.materials.discovery.campaign`). Every reason a campaign cannot run
(conditions no crystal meets, an unreachable Ray address, a full disk, a folder of another version
or other settings) is said before any work starts, and nothing stored is changed by it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from battgai.materials.discovery.campaign import MAX_PER_ROUND, CampaignSettings
from battgai.materials.generation.sample import DEFAULT_MODEL

BAR = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--conditions", default="",
                   help='the app\'s conditions, e.g. "allowed=Li,Fe,P,O;required=Li;ion=Li;natoms=14"')
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--per-round", type=int, default=50, help=f"crystals sampled per round (at most {MAX_PER_ROUND})")
    p.add_argument("--relax", type=int, default=10, help="crystals relaxed per round: the best by static E_hull")
    p.add_argument("--out", type=Path, help="campaign folder (default: a new run in the run store, BATTGAI_HOME)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--relax-steps", type=int, default=100, help="FIRE steps per relaxation (fmax 0.1 eV/A)")
    p.add_argument("--guidance", type=float, default=2.0, help="classifier-free guidance on property targets")
    p.add_argument("--novel-only", action="store_true", help="reject sampled crystals that match a known phase")
    p.add_argument("--v-min", type=float, help="with ion=...: a found crystal's average voltage is at least this "
                                                "(V vs the ion's metal)")
    p.add_argument("--v-max", type=float, help="... and at most this")
    p.add_argument("--min-capacity", type=float, default=0.0, help="a found crystal's capacity is at least this "
                                                                  "(mAh/g, removing every working ion)")
    p.add_argument("--max-cpu-hours", type=float, default=0.0,
                   help="stop after the round that spends this much CPU time (driver + workers; 0: no budget)")
    p.add_argument("--stop-found", type=int, default=0, help="stop after the round that brings the number found "
                                                              "to this (0: run every round)")
    p.add_argument("--resume", action="store_true",
                   help="with --out: resume the campaign there with the settings it was started with")
    p.add_argument("--learn-steps", type=int, default=0,
                   help="reward fine-tuning steps of the generator between rounds (0: sample the bundled model)")
    p.add_argument("--learn-batch", type=int, default=32, help="crystals sampled per learning step")
    p.add_argument("--dft-audit", type=int, default=0, metavar="K",
                   help="after the rounds, check the K found crystals with the lowest E_hull with DFT (GPAW, "
                        "minutes each) and report what DFT confirms")
    p.add_argument("--dft-preset", choices=("screen", "accurate"), default="screen")
    p.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster (host:port or ray://host:port; default RAY_ADDRESS, else a "
                        "local Ray started here with one worker per core)")
    p.add_argument("--workers", type=int, default=None, help="potential workers (default: one per CPU of Ray)")


def settings_of(args: argparse.Namespace) -> CampaignSettings:
    """The settings the arguments ask for; with ``--resume`` those stored in the ``--out`` campaign."""
    from battgai.materials.discovery import campaign

    if args.resume:
        if args.out is None:
            raise campaign.CampaignError("--resume needs --out, the campaign (or its run folder) to resume")
        meta = campaign.CampaignFolder(campaign.data_root(args.out)).meta()
        if meta is None:
            raise campaign.CampaignError(f"{args.out} holds no campaign to resume")
        return campaign.stored_settings(meta)
    return CampaignSettings(conditions=args.conditions, rounds=args.rounds, per_round=args.per_round,
                            relax=args.relax, seed=args.seed, model=args.model, relax_steps=args.relax_steps,
                            guidance=args.guidance, novel_only=args.novel_only, learn_steps=args.learn_steps,
                            learn_batch=args.learn_batch, dft_audit=args.dft_audit, dft_preset=args.dft_preset,
                            v_min=args.v_min, v_max=args.v_max, min_capacity=args.min_capacity,
                            max_cpu_hours=args.max_cpu_hours, stop_found=args.stop_found)


def _bar(t0: float):
    def show(done: int, total: int, text: str) -> None:
        filled = round(BAR * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (BAR - filled)}] {done}/{total} rounds, "
                         f"{time.time() - t0:.0f} s: {text:<40}")
        sys.stderr.flush()
    return show


def _stop(signum, frame):
    # SIGTERM (the page's Stop) unwinds like Ctrl-C: the run is marked stopped, committed rounds stay.
    raise KeyboardInterrupt


def _fail_waiting_run(out: Path | None, error: str) -> None:
    # A run the page created for this driver says "running" until the driver claims it; one that cannot start
    # must say why instead. A run of an earlier driver (interrupted, finished) keeps its status.
    from battgai.core.runs import RunStore
    from battgai.materials.discovery import campaign

    if out is None or not (out / "run.json").exists():
        return
    record = RunStore(out.parent.parent).get(out.name)
    if record.status == "running" and record.task == campaign.TASK and not campaign.CampaignFolder(
            campaign.data_root(out)).committed():
        campaign.claim_run(out).finish("failed", error)


def run_cli(args: argparse.Namespace) -> int:
    """Check, then run the campaign; returns the exit status (2: it could not start, nothing changed)."""
    from battgai.core import engine
    from battgai.core.runs import RunStore
    from battgai.materials.discovery import campaign
    from battgai.materials.discovery.engine import Engine

    out = args.out
    try:
        settings = settings_of(args)
        if problems := settings.problems():
            raise campaign.CampaignError(" ".join(problems))
        address = engine.resolve_address(args.ray_address)
        if address:
            engine.check_address(address)
        check_folder = campaign.CampaignFolder(campaign.data_root(out) if out else RunStore().runs_dir)
        prepared = campaign.prepare(settings, check_folder)
        started = engine.connect(address)
    except (campaign.CampaignError, engine.EngineError) as exc:
        sys.stderr.write(f"campaign not started: {exc}\n")
        _fail_waiting_run(out, f"campaign not started: {exc}")
        return 2
    signal.signal(signal.SIGTERM, _stop)
    run = None
    try:
        if out is None:
            run = RunStore().start(campaign.TASK, campaign.title(settings), settings.as_dict())
            out = run.path
        elif (out / "run.json").exists():
            run = campaign.claim_run(out)
        sys.stderr.write(f"campaign in {out}; {prepared.notes['references']}; {prepared.notes['novelty']}\n")
        eng = Engine(args.workers)
        sys.stderr.write(f"{eng.n_workers} CHGNet workers on Ray\n")
        if run is not None:
            with run:
                summaries = campaign.run_campaign(settings, campaign.data_root(out), eng, _bar(time.time()),
                                                  prepared)
                run.write("candidates.csv", campaign.CampaignFolder(campaign.data_root(out)).csv().encode())
        else:
            summaries = campaign.run_campaign(settings, out, eng, _bar(time.time()), prepared)
    finally:
        if started:
            import ray

            ray.shutdown()
    sys.stderr.write("\n")
    for s in summaries:
        print(f"round {s['round']}: {s['sampled']} sampled, {s['relaxed']} relaxed, {s['stable']} stable, "
              f"{s['suspect']} suspect, {s['sun']} S.U.N., {s['found']} found, "
              f"{s['candidates_per_minute']:.1f} crystals/min")
    folder = campaign.CampaignFolder(campaign.data_root(out))
    if why := folder.status().get("stopped"):
        print(f"stopped early: {why}")
    audit = folder.dft_audit()
    if audit:
        print(f"DFT audit ({audit['preset']}): {audit['confirmed']} of {len(audit['rows'])} found crystals "
              f"confirmed, {audit['refuted']} refuted")
    print(f"campaign in {out}")
    return 0


def command(settings: CampaignSettings, out: Path, ray_address: str | None = None) -> list[str]:
    """The command line that runs ``settings`` into ``out`` (what the Campaigns page starts)."""
    args = [sys.executable, "-m", "battgai", "campaign", "--conditions", settings.conditions,
            "--rounds", str(settings.rounds), "--per-round", str(settings.per_round), "--relax", str(settings.relax),
            "--seed", str(settings.seed), "--model", settings.model, "--relax-steps", str(settings.relax_steps),
            "--guidance", str(settings.guidance), "--learn-steps", str(settings.learn_steps),
            "--learn-batch", str(settings.learn_batch), "--dft-audit", str(settings.dft_audit),
            "--dft-preset", settings.dft_preset, "--min-capacity", str(settings.min_capacity),
            "--max-cpu-hours", str(settings.max_cpu_hours), "--stop-found", str(settings.stop_found),
            "--out", str(out)]
    args += [a for name in ("v_min", "v_max") if getattr(settings, name) is not None
             for a in (f"--{name.replace('_', '-')}", str(getattr(settings, name)))]
    return args + (["--novel-only"] if settings.novel_only else []) + (
        ["--ray-address", ray_address] if ray_address else [])


def launch(settings: CampaignSettings, ray_address: str | None = None, store=None):
    """Check, create the campaign's run in the store and start its driver detached; returns the run.

    The driver runs in its own session (``start_new_session``), so closing the browser tab or stopping
    the server does not stop it; its output goes to ``campaign.log`` in the run folder.

    Raises
    ------
    CampaignError, EngineError
        The campaign cannot run (said before anything is stored).
    """
    import os
    import subprocess

    from battgai.core import engine
    from battgai.core.registry import REPO_ROOT
    from battgai.core.runs import RunStore
    from battgai.materials.discovery import campaign

    store = store or RunStore()
    problems = settings.problems() + campaign.CampaignFolder(store.runs_dir).problems(settings)
    if problems:
        raise campaign.CampaignError(" ".join(problems))
    if ray_address:
        engine.check_address(ray_address)
    run = store.start(campaign.TASK, campaign.title(settings), settings.as_dict())
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        with open(run.path / "campaign.log", "wb") as log:
            subprocess.Popen(command(settings, run.path, ray_address), cwd=REPO_ROOT, env=env, stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        run.finish("failed", f"could not start the campaign process: {exc}")
        raise
    return run


def resume(run_path: Path, ray_address: str | None = None) -> None:
    """Start the driver of an interrupted campaign run again, detached, with the settings it was started with.

    It continues at the first round not committed (the folder's rounds are never repeated); its output is
    appended to the run's ``campaign.log``.

    Raises
    ------
    CampaignError
        The folder holds no campaign this version can resume.
    """
    import os
    import subprocess

    from battgai.core.registry import REPO_ROOT
    from battgai.materials.discovery import campaign

    folder = campaign.CampaignFolder(campaign.data_root(run_path))
    meta = folder.meta()
    if meta is None:
        raise campaign.CampaignError(f"{run_path} holds no campaign to resume")
    if problems := folder.problems(campaign.stored_settings(meta)):
        raise campaign.CampaignError(" ".join(problems))
    args = [sys.executable, "-m", "battgai", "campaign", "--resume", "--out", str(run_path)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with open(run_path / "campaign.log", "ab") as log:
        subprocess.Popen(args + (["--ray-address", ray_address] if ray_address else []), cwd=REPO_ROOT, env=env,
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
