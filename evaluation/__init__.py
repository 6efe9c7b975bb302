"""Offline policy evaluation and reports (uses `recsim_env` and the agents' `Policy` contract).

Estimators live in `evaluation.ope`; `evaluation.report` turns their estimates into report.md / report.html;
`evaluation.cli` is the `seqrec ope-report` command. Importing this package stays light (numpy only).
"""
