"""The units every subpackage shares (docs/CONTRACTS.md, glossary). A leaf module: imports nothing."""

SNIPPET_FRAMES = 16  # source frames per snippet (VadCLIP/Ex-VAD); one visual embedding per snippet
WINDOW_SNIPPETS = 256  # snippets per pipeline window by default (the unit the model stages process)
