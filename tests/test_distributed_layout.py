"""Process-free tests of the distributed layout math and of the launcher-environment parsing."""

from __future__ import annotations

import itertools
import os
import stat

import pytest
from torch_harmonics.distributed import compute_split_shapes

from sciml.errors import UsageError
from sciml.forecasting.distributed.env import (
    DEFAULT_PORT,
    expand_hostlist,
    first_host,
    launch_env,
    slurm_port,
)
from sciml.forecasting.distributed.layout import (
    GROUP_AXES,
    GROUP_ORDER,
    MeshCoords,
    MeshShape,
    split_bounds,
    split_evenly,
    split_sizes,
    tile,
)


def all_meshes(max_ranks: int = 8):
    for b, e, h, w in itertools.product(range(1, max_ranks + 1), repeat=4):
        if b * e * h * w <= max_ranks:
            yield MeshShape(batch=b, ensemble=e, h=h, w=w)


MESHES = list(all_meshes())


def test_mesh_count():
    # ordered factorisations of n into 4 factors, d4(n) = prod_p C(k_p + 3, 3) over prime powers p^k_p of n:
    # n = 1..8 -> 1, 4, 4, 10, 4, 16, 4, 20; every mesh of <= 8 ranks is tested below
    assert len(MESHES) == 1 + 4 + 4 + 10 + 4 + 16 + 4 + 20


@pytest.mark.parametrize("n", [1, 2, 5, 16, 17, 33, 64, 91])
@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7, 8])
def test_split_matches_torch_harmonics(n, parts):
    if n < parts:
        with pytest.raises(UsageError, match="cannot split"):
            split_sizes(n, parts)
        return
    assert split_sizes(n, parts) == compute_split_shapes(n, parts)
    bounds = [split_bounds(n, parts, k) for k in range(parts)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    assert max(split_sizes(n, parts)) - min(split_sizes(n, parts)) <= 1


@pytest.mark.parametrize("mesh", MESHES, ids=lambda m: f"b{m.batch}e{m.ensemble}h{m.h}w{m.w}")
def test_mesh_layout(mesh):
    n = mesh.size
    # rank <-> coordinates is a bijection and row-major with w fastest
    coords = [mesh.coords(r) for r in range(n)]
    assert [mesh.rank(c) for c in coords] == list(range(n))
    expected = list(itertools.product(range(mesh.batch), range(mesh.ensemble), range(mesh.h), range(mesh.w)))
    assert [(c.batch, c.ensemble, c.h, c.w) for c in coords] == expected
    for name, axes in GROUP_AXES.items():
        groups = mesh.group_ranks(name)
        size = 1
        for a in axes:
            size *= mesh.extent(a)
        # a partition of the world into groups of the right size
        assert sorted(r for g in groups for r in g) == list(range(n))
        assert all(len(g) == size for g in groups) and len(groups) == n // size
        for g in groups:
            # members differ only along the group's axes, and are ordered row-major along them
            fixed = [a for a in ("batch", "ensemble", "h", "w") if a not in axes]
            cs = [mesh.coords(r) for r in g]
            assert all(all(getattr(c, a) == getattr(cs[0], a) for a in fixed) for c in cs)
            assert [tuple(getattr(c, a) for a in axes) for c in cs] == list(
                itertools.product(*(range(mesh.extent(a)) for a in axes))
            )
    # torch-harmonics convention inside a spatial group: index = i * W + j
    for g in mesh.group_ranks("spatial"):
        for idx, r in enumerate(g):
            c = mesh.coords(r)
            assert (idx // mesh.w, idx % mesh.w) == (c.h, c.w)
    # spatial groups are runs of consecutive ranks (one replica stays inside a node)
    for g in mesh.group_ranks("spatial"):
        assert list(g) == list(range(g[0], g[0] + len(g)))
    # tiles of a 33 x 64 grid (uneven in latitude) cover it exactly once per spatial group
    if mesh.h <= 33 and mesh.w <= 64:
        for g in mesh.group_ranks("spatial"):
            covered = [[0] * 64 for _ in range(33)]
            for r in g:
                t = mesh.tile(33, 64, r)
                for i in range(*t.lat):
                    for j in range(*t.lon):
                        covered[i][j] += 1
            assert all(v == 1 for row in covered for v in row)
    assert set(GROUP_ORDER) <= set(GROUP_AXES)


def test_from_world_and_errors():
    assert MeshShape.from_world(8, h=2, w=2) == MeshShape(batch=2, ensemble=1, h=2, w=2)
    assert MeshShape.from_world(8, h=2, ensemble=2) == MeshShape(batch=2, ensemble=2, h=2, w=1)
    assert MeshShape.from_world(1) == MeshShape()
    with pytest.raises(UsageError, match="not a multiple"):
        MeshShape.from_world(6, h=4)
    with pytest.raises(UsageError, match=">= 1"):
        MeshShape.from_world(4, w=0)
    with pytest.raises(UsageError, match="outside"):
        MeshShape(h=2).coords(2)
    with pytest.raises(UsageError, match="outside"):
        MeshShape(h=2).rank(MeshCoords(0, 0, 2, 0))
    with pytest.raises(UsageError, match="unknown process group"):
        MeshShape().group_ranks("model")
    with pytest.raises(UsageError, match="cannot split"):
        tile(3, 64, 4, 1, 0, 0)
    assert split_evenly(8, 2, "ensemble size") == 4
    with pytest.raises(UsageError, match="multiple of 3"):
        split_evenly(8, 3, "ensemble size")


def test_uneven_tile_example():
    # 33 x 64 on 2 x 2: 17/16 latitude rows, 32/32 longitudes (torch-harmonics: first chunks larger)
    mesh = MeshShape(h=2, w=2)
    assert [mesh.tile(33, 64, r).shape for r in range(4)] == [(17, 32), (17, 32), (16, 32), (16, 32)]
    assert mesh.tile(33, 64, 3).slices == (slice(17, 33), slice(32, 64))


# ---------------------------------------------------------------- launcher environments


def test_torchrun_env():
    env = launch_env(
        {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu-a01", "MASTER_PORT": "29400"}
    )
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (3, 4, 1, "torchrun")
    assert env.init_method == "tcp://gpu-a01:29400"
    assert launch_env({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "::1", "MASTER_PORT": "1"}).init_method == (
        "tcp://[::1]:1"
    )


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"RANK": "0"}, "WORLD_SIZE is not set"),
        ({"RANK": "4", "WORLD_SIZE": "4", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "outside 0..3"),
        ({"RANK": "x", "WORLD_SIZE": "4"}, "not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "29500"}, "MASTER_ADDR is not set"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "a"}, "MASTER_PORT is not set"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "70000"}, "not a TCP port"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, "SLURM_JOB_NODELIST is not set"),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n1"}, "outside 0..1"),
    ],
)
def test_bad_environments(environ, message):
    with pytest.raises(UsageError, match=message):
        launch_env(environ, host_of=lambda s: expand_hostlist(s)[0])


def test_single_process_env():
    env = launch_env({"PATH": "/usr/bin"})
    assert (env.rank, env.world_size, env.local_rank, env.launcher, env.master_port) == (
        0,
        1,
        0,
        "single",
        DEFAULT_PORT,
    )


def test_slurm_env_multi_node():
    base = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[07-08,11],login2",
        "SLURM_JOB_ID": "123456",
        "PATH": "",  # no scontrol: our parser
    }
    env = launch_env(base)
    assert (env.rank, env.world_size, env.local_rank, env.launcher) == (5, 8, 1, "slurm")
    assert env.master_addr == "gpu07"
    assert env.master_port == slurm_port("123456") == 20000 + 123456 % 10000
    # every task of the job derives the same rendezvous, whatever its rank and node
    others = [launch_env({**base, "SLURM_PROCID": str(r), "SLURM_LOCALID": str(r % 4)}) for r in range(8)]
    assert {(e.master_addr, e.master_port) for e in others} == {("gpu07", env.master_port)}
    # explicit MASTER_ADDR / MASTER_PORT win; SLURM_NPROCS is an accepted alias of SLURM_NTASKS
    env = launch_env({**base, "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "4242"})
    assert (env.master_addr, env.master_port) == ("10.0.0.1", 4242)
    alias = {k: v for k, v in base.items() if k != "SLURM_NTASKS"} | {"SLURM_NPROCS": "8"}
    assert launch_env(alias).world_size == 8
    # torchrun variables take precedence over SLURM ones (torchrun launched inside an allocation)
    env = launch_env({**base, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "x", "MASTER_PORT": "1"})
    assert env.launcher == "torchrun"
    assert slurm_port("777_3") == 20777


@pytest.mark.parametrize(
    "hostlist, hosts",
    [
        ("node01", ["node01"]),
        ("node[01-03,07]", ["node01", "node02", "node03", "node07"]),
        ("node[8-10]", ["node8", "node9", "node10"]),
        ("node[08-10]", ["node08", "node09", "node10"]),
        ("a1,b[2-3],c", ["a1", "b2", "b3", "c"]),
        ("rack[1-2]-n[0-1]", ["rack1-n0", "rack1-n1", "rack2-n0", "rack2-n1"]),
        ("gpu-[001-002].cluster", ["gpu-001.cluster", "gpu-002.cluster"]),
        (" x[1,3] ", ["x1", "x3"]),
    ],
)
def test_expand_hostlist(hostlist, hosts):
    assert expand_hostlist(hostlist) == hosts


@pytest.mark.parametrize("bad", ["", "node[01-03", "node]1[", "node[3-1]", "node[a-b]", "a,,b", "n[[1-2]]"])
def test_expand_hostlist_errors(bad):
    with pytest.raises(UsageError, match="host list"):
        expand_hostlist(bad)


def _fake_scontrol(tmp_path, body: str) -> str:
    path = tmp_path / "scontrol"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path)


def test_first_host_prefers_scontrol(tmp_path):
    # scontrol, when present, is the authority (it knows site-specific host list syntax)
    bindir = _fake_scontrol(tmp_path, 'test "$1 $2" = "show hostnames" && printf "fromscontrol\\nother\\n"')
    assert first_host("node[01-02]", path=bindir) == "fromscontrol"
    env = launch_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "n[1-2]", "PATH": bindir})
    assert env.master_addr == "fromscontrol"


def test_first_host_falls_back_when_scontrol_fails(tmp_path):
    bindir = _fake_scontrol(tmp_path, "exit 1")
    assert first_host("node[05-06]", path=bindir) == "node05"
    assert first_host("node[05-06]", path=os.devnull) == "node05"


def test_parallel_config_and_backend_choice():
    import torch

    from sciml.forecasting.distributed.context import ParallelConfig, choose_backend

    for bad in (dict(h=0), dict(ensemble=0), dict(threads_per_rank=0), dict(timeout_s=0), dict(backend="mpi")):
        with pytest.raises(UsageError):
            ParallelConfig(**bad)
    assert choose_backend(None) == ("nccl" if torch.cuda.is_available() else "gloo")
    assert choose_backend("gloo") == "gloo"
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="needs CUDA"):
            choose_backend("nccl")
