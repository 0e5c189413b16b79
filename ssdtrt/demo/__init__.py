"""The demo job (`ssdtrt demo` / `make demo`): `job` (run_demo, the steps in order), `settings`, `context` (log,
progress, artifacts), `training`, `artifacts` (exports, engines), `scoring` (mAP, annotated images), `parity`,
`latency`, and `report` (report.json / report.md)."""
