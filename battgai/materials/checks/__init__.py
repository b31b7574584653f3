"""How a crystal is judged: validity, novelty, energies with a potential, E_hull, battery metrics."""
