"""Reusable Streamlit widgets. Each module keeps a pure builder (HTML / figure / bytes),
tested without a browser, next to the thin function that puts it on the page."""
