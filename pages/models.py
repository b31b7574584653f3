"""Model zoo: every bundled model, its card and its measured metrics."""

import pandas as pd
import plotly.express as px
import streamlit as st

from battgai.core import registry
from components.deep_link import through_app

through_app()

st.title("Model zoo")
st.write(
    "Every model bundled with battgai, as its card describes it: what it was trained on, how it was split, "
    "what it scores on held-out data and the command that measured it. Weights are safetensors files whose "
    "sha256 is checked on every load."
)

cards = registry.list_cards()
if not cards:
    st.info("No bundled models in `weights/` yet.")
    st.stop()

table = pd.DataFrame(
    [
        {
            "model": c.name,
            "task": c.task,
            "architecture": c.architecture,
            "parameters": c.parameters,
            "size (MB)": round(c.size_bytes / 1e6, 2),
            "trained": c.date,
            "sha256": c.sha256[:12],
        }
        for c in cards
    ]
)
st.dataframe(table, hide_index=True, width="stretch")
fig = px.bar(table, x="model", y="parameters", color="task", log_y=True, title="Parameters per model")
fig.update_layout(height=320, margin={"l": 40, "r": 10, "t": 40, "b": 40})
st.plotly_chart(fig, width="stretch")

for c in cards:
    with st.expander(f"{c.name} ({c.task}): {c.architecture}"):
        st.markdown(f"**Training data:** {c.training_data}\n\n**Split:** {c.split}")
        if c.metrics:
            st.dataframe(
                pd.DataFrame({"metric": list(c.metrics), "value": list(c.metrics.values())}),
                hide_index=True,
            )
        st.markdown(f"**Measured with:** `{c.metrics_command}`\n\n**Retrain:** `{c.retrain_command}`")
        if c.notes:
            st.markdown(f"**Notes:** {c.notes}")
        st.caption(f"sha256 {c.sha256} | {c.size_bytes:,} bytes | {c.parameters:,} parameters | {c.date}")
        if st.button("Verify checksum", key=f"verify-{c.name}"):
            try:
                registry.load_tensors(c.name)
            except (registry.ChecksumError, registry.ModelNotFound) as exc:
                st.error(str(exc))
            else:
                st.success("Weights match the card's sha256.")
