from hpcgan import dist

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
               "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK",
               "SLURM_PROCID", "SLURM_LOCALID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "SLURM_STEP_NUM_NODES")


def _clean(monkeypatch):
    for v in LAUNCH_VARS:
        monkeypatch.delenv(v, raising=False)


def test_single_process(monkeypatch):
    _clean(monkeypatch)
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.is_rank0()) == (0, 1, 0, True)
    assert dist.mpi_comm() is None and dist.launcher() == "none"


def test_torchrun(monkeypatch):
    _clean(monkeypatch)
    for k, v in dict(RANK="3", WORLD_SIZE="8", LOCAL_RANK="1", LOCAL_WORLD_SIZE="4").items():
        monkeypatch.setenv(k, v)
    assert (dist.launcher(), dist.rank(), dist.world_size(), dist.local_rank(), dist.local_world_size()) == \
        ("torchrun", 3, 8, 1, 4)
    assert not dist.is_rank0() and dist.mpi_comm() is None


def test_slurm_step_and_batch_script(monkeypatch):
    _clean(monkeypatch)
    for k, v in dict(SLURM_PROCID="5", SLURM_LOCALID="1", SLURM_NTASKS="8").items():
        monkeypatch.setenv(k, v)
    assert dist.world_size() == 1  # the batch script itself is one process
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "8")
    monkeypatch.setenv("SLURM_STEP_NUM_NODES", "2")
    assert (dist.launcher(), dist.rank(), dist.world_size(), dist.local_rank(), dist.local_world_size()) == \
        ("slurm", 5, 8, 1, 4)


def test_open_mpi_and_pmi(monkeypatch):
    _clean(monkeypatch)
    for k, v in dict(OMPI_COMM_WORLD_SIZE="4", OMPI_COMM_WORLD_RANK="2", OMPI_COMM_WORLD_LOCAL_RANK="0").items():
        monkeypatch.setenv(k, v)
    assert (dist.launcher(), dist.rank(), dist.world_size(), dist.local_rank()) == ("mpi", 2, 4, 0)
    _clean(monkeypatch)
    monkeypatch.setenv("PMI_SIZE", "6")
    monkeypatch.setenv("PMI_RANK", "4")
    assert (dist.rank(), dist.world_size(), dist.log_prefix()) == (4, 6, "[rank 4/6] ")
