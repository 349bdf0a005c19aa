#!/usr/bin/env python3
"""A skeleton of mrepo's evaluation contract (docs/merging.md §13.1), to start your own from.

  mrepo merge a b --search --eval "python3 scripts/eval_sample.py"

The candidate model folder is the last argument (also $MREPO_CANDIDATE). Progress goes anywhere but the
last line of stdout, which must be ONE JSON object of task scores, higher is better. Exit non-zero on
failure (the trial is recorded as failed and skipped). Replace score_task with your evaluation.
"""
import json, os, sys


def score_task(folder, task):
    # Load the model in `folder` (model.safetensors, config.json, tokenizer files) and score `task`
    # on held-out data you did NOT tune on. This placeholder only checks the folder is there.
    if not os.path.exists(os.path.join(folder, "config.json")) and not any(f.endswith(".safetensors") for f in os.listdir(folder)):
        raise SystemExit(f"{folder}: no model")
    return 0.0


folder = sys.argv[-1]
print(f"evaluating {folder}", file=sys.stderr)
print(json.dumps({task: score_task(folder, task) for task in ("task_a", "task_b")}))
