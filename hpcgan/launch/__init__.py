"""Job submission only: submitit jobs and job arrays, site profiles, MPI/srun launch.

High level: it calls the stage functions with their configs (never the CLI); no stage
imports it. ``hpcgan.launch.stages`` is the registry of the stages a job can run (how
a request becomes the stage's config, and the call); ``hpcgan.launch.submit`` submits
any stage, the experiment grid as one job array and checkpointable GAN training;
``hpcgan.launch.sites`` holds the cluster profiles of ``configs/sites``.
"""

# The stages that make sense as a batch job (`hpcgan submit STAGE`); hpcgan.launch.stages.REGISTRY has one
# entry for each.
STAGES = ("phantom", "preprocess", "data", "train-gan", "generate", "metrics", "classify", "experiment", "report",
          "bench")
