"""battgai: generative AI for battery research (UI-free backend).

Nothing in this package imports streamlit; every function here can be used
from a notebook or the command line.
"""

__version__ = "0.5.2"
