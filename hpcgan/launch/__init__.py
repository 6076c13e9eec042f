"""Job submission only: submitit jobs and job arrays, site profiles, MPI/srun launch.

High level: it calls the stages (through the same CLI a user types); no stage
imports it. ``hpcgan.launch.submit`` submits any stage, the experiment grid as one
job array and checkpointable GAN training; ``hpcgan.launch.sites`` holds the
cluster profiles of ``configs/sites``.
"""

# The CLI verbs that make sense as a batch job (`hpcgan submit STAGE`).
STAGES = ("phantom", "preprocess", "data", "train-gan", "generate", "metrics", "classify", "experiment", "report",
          "bench")
