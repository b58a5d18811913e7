"""Two task-test run folders' variable-rate students, paired on the same test scenes (README "One encoder, many
tasks": the 32-epoch students ÷ the 16-epoch ones).

    python tests/helpers/task_paired.py TASK NEW_OUT OLD_OUT [DRAWS] [BETAS]

NEW_OUT and OLD_OUT are ``minist tasks --test --out`` folders; their ``scenes/<task>-variable-rate-<β>.pt``
records are read back (nothing is rescored). Prints NEW ÷ OLD in the task's metric with a paired bootstrap
95 % interval (:func:`minist.evaluate.task_bootstrap`), e.g.
``python tests/helpers/task_paired.py detection runs/tasks-test-s2x32 runs/tasks-test-teacher21 20``.
"""

import sys

import torch

from minist.evaluate import task_bootstrap


def main(task: str, new: str, old: str, draws: int = 1000, betas: str = "0.005") -> None:
    for beta in betas.split(","):
        a, b = (torch.load(f"{d}/scenes/{task}-variable-rate-{beta}.pt", weights_only=True)["scenes"]
                for d in (new, old))
        r = task_bootstrap(task, a, b, draws)
        print(f"{task} β {beta}: {r['ratio_pct']:.2f} % [{r['ci95_pct'][0]:.2f}, {r['ci95_pct'][1]:.2f}] "
              f"({r['draws']} draws)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], *(int(sys.argv[4]),) if len(sys.argv) > 4 else (),
         *sys.argv[5:6])
