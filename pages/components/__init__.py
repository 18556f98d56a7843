"""View pieces the pages share or that would crowd a page file; they draw, and call core services for the rest.

A sub-folder, not files beside the pages: Streamlit treats every top-level file in ``pages/`` as a page.
"""
