"""Live dashboard components (ipywidgets + bqplot) fed by one viewer's own Streamz pipeline."""
