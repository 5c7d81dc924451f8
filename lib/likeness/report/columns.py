"""The result columns and files the report shows when the analysis wrote them.

Issue 7 adds columns to ``tracks.csv`` and ``episodes.csv`` and new tables to the run folder.
Their names are kept here, in one place, each with the label the report prints: a view shows a
column when the table has it and leaves it out when not, so reports of older run folders still
build. Renaming a column in the analysis means changing its name here only.
"""

from __future__ import annotations

# tracks.csv: column -> label in the per-track table.
TRACK_OPTIONAL = {
    "raw_score": "raw score",
    "log10_lr_lo": "log10 LR lo",
    "log10_lr_hi": "log10 LR hi",
    "lineup_log10_lr": "lineup log10 LR",
    "claimant_seconds": "claimant s",
    "persona": "persona",
    "performer_score": "performer score",
    "performer_log10_lr": "performer log10 LR",
}
# The interval columns of a track's LR (shown as [lo, hi] beside the LR when present).
TRACK_LR_INTERVAL = ("log10_lr_lo", "log10_lr_hi")
TRACK_PERSONA = "persona"
TRACK_LINEUP_LR = "lineup_log10_lr"
TRACK_PERFORMER_LR = "performer_log10_lr"
TRACK_CLAIMANT_SECONDS = "claimant_seconds"

# episodes.csv: column -> label in the per-episode table.
EPISODE_OPTIONAL = {
    "claimant_seconds_faces": "claimant s (face by face)",
    "lineup_log10_lr": "lineup log10 LR",
    "best_track_persona": "persona",
    "best_track_performer_log10_lr": "performer log10 LR",
}
EPISODE_FACE_SECONDS = "claimant_seconds_faces"
EPISODE_LINEUP_LR = "lineup_log10_lr"
EPISODE_PERSONA = "best_track_persona"
EPISODE_PERFORMER_LR = "best_track_performer_log10_lr"

PERSONAS_FILE = "personas.csv"
# New tables of the run folder: file -> (caption, what it is).
OPTIONAL_TABLES = {
    "personas.csv": ("Personas linked across episodes",
                     "tracks of different episodes whose faces the model links to one person"),
    "sensitivity.csv": ("Sensitivity of each episode's strongest evidence",
                        "the episode's strongest log10 LR when one factor of the analysis "
                        "is varied"),
    "calibrators.csv": ("Calibrators compared on validation data",
                        "each calibrator's costs on identity-disjoint validation data; the "
                        "chosen one is marked"),
    "models.csv": ("Results per recognition model",
                   "each episode's strongest log10 LR under each model, and their agreement"),
}

# The performers' embedded photos: likeness.stills.PERFORMERS_FILE (a lower layer than this).
