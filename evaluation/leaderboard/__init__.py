"""`seqrec leaderboard`: every agent trained under one budget, every policy evaluated on the same users.

from evaluation.leaderboard import LeaderboardConfig, run_leaderboard, write_leaderboard
config = LeaderboardConfig(seeds=2, episodes=200, time_budget_s=60)
results = run_leaderboard(config, "runs/leaderboard")
write_leaderboard(results, config, "runs/leaderboard", command="...", wall_s=...)
"""

from evaluation.leaderboard.config import LeaderboardConfig
from evaluation.leaderboard.report import Summary, summarise, write_leaderboard
from evaluation.leaderboard.run import Result, row_names, run_leaderboard

__all__ = [
    "LeaderboardConfig",
    "Result",
    "Summary",
    "row_names",
    "run_leaderboard",
    "summarise",
    "write_leaderboard",
]
