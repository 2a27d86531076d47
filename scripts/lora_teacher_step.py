"""Training-step cost of RD with an adapted teacher, side by side with RD and the LoRA baseline.

One process, the configurations round-robin (so machine noise hits all alike), the minimum of
``--repeats`` steps after one warm-up, on random 2D patches (the cost does not depend on the
pixels). Prints milliseconds per step and each as a multiple of RD's step with cached teacher
features; ``--out`` also saves them as JSON.

    python scripts/lora_teacher_step.py --batch 32 --patch 64 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rd_components.engines import RDBranches
from rd_components.foundation import create_teacher
from rd_components.losses import RDLoss
from rd_components.networks import (AdaptedTeacherReprogrammer, DeployableStudent, LoRAClassifier, Reprogrammer,
                                    SharedClassifier, create_student)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="efficientnet_lite0")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="JSON file for the results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.rand(args.batch, 1, args.patch, args.patch)
    y = torch.randint(0, args.classes, (args.batch,))
    features = create_teacher(args.teacher)(x).detach()  # what a warm feature cache hands RD
    channels, *size = features.shape[1:]

    def student() -> DeployableStudent:  # the bundle's default student
        return DeployableStudent(create_student("resnet10", 2, 1, 128, widen_factor=0.25),
                                 SharedClassifier(128, args.classes))

    rd = RDBranches(student(), Reprogrammer(2, channels, 128, feature_size=size))
    adapted = RDBranches(student(), AdaptedTeacherReprogrammer(create_teacher(args.teacher),
                                                               Reprogrammer(2, channels, 128, feature_size=size)))
    lora = LoRAClassifier(create_teacher(args.teacher), args.classes)
    loss = RDLoss()

    def rd_step(branches: RDBranches, teacher_input: torch.Tensor) -> None:
        out = branches(x, teacher_input)
        loss(out["student_logits"], out["teacher_logits"], out["student_features"], out["teacher_features"], y)["loss"].backward()

    steps = {"rd (cached teacher features)": lambda: rd_step(rd, features),
             "rd_lora_teacher": lambda: rd_step(adapted, x),  # the source hands the images through
             "lora": lambda: torch.nn.functional.cross_entropy(lora(x), y).backward()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(args.repeats + 1):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            if repeat:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    best = {name: 1000 * min(values) for name, values in times.items()}
    reference = best["rd (cached teacher features)"]
    for name, ms in best.items():
        print(f"{name:30s} {ms:8.0f} ms/step  {ms / reference:5.1f}x RD's")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "ms_per_step": best}, f, indent=2)


if __name__ == "__main__":
    main()
