"""Stage 5, the book: outputs of a notebook, the papermill runner, the renderer."""
