"""Scribbling in the browser: `dmsps annotate` serves one local page to draw scribbles,
train, review predictions and uncertainty, and be shown where to scribble next.

- ``suggestions``: the model's per-voxel uncertainty and decoder disagreement, per-slice
  and per-case scores, the ranking `dmsps suggest` and the page's "next" button share;
  which checkpoint a model argument (file, run folder, shipped name) means.
- ``workspace``: the dataset as the page sees it: cases and their annotation status,
  2D slices of images, labels, predictions and uncertainty, scribble volumes, and the
  checked, atomic, backed-up scribble save; bounded caches.
- ``jobs``: `dmsps run` as a background subprocess, one at a time, its output streamed
  as events; the event bus the page listens to (Server-Sent Events).
- ``server``: the HTTP server (standard library), the access token, the routes.
- ``browser``: a minimal Chrome DevTools Protocol client over a pipe, to drive a headless
  Chromium in the end-to-end test and for the README screenshots.
- ``static/``: the page: plain HTML, CSS and JavaScript on a canvas, no build step.

docs/annotate.md explains the design, the suggestion rule and the security model.
"""
