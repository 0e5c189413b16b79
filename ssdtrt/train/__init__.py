"""Training: `loop` (train(): setup, epochs, steps, finish), `config` (TrainConfig, per-preset recipes),
`schedule` (optimizer, warmup + cosine LR over progress), `data` (augmentation, seeded batch order),
`checkpointing` (last / best / resume), `eval_hook` (val mAP after each epoch), `distributed` (torchrun, threads),
`state` (the run's mutable state the others share)."""
