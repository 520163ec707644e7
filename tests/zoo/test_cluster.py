"""Scale-out without a shared file system: tasks get values, never paths; a simulated 2-node Ray
cluster builds the same bytes as a local build, even when every task's worker dies once."""

import json
import pickle
from contextlib import contextmanager

import pytest

import modelprint.zoo.build as build_module
from modelprint.models import ModelBytes
from modelprint.zoo import ZooManifest
from modelprint.zoo.build import build_zoo


def _shas(zoo):
    return {r["id"]: r["sha256"] for r in ZooManifest.read(zoo).rows}


def test_task_inputs_hold_no_path_into_the_zoo_folder(tiny_spec, tmp_path, reference_zoo, monkeypatch):
    calls = []

    class Done:  # a handle, hashable by identity as futures are
        def __init__(self, value):
            self.value = value

    class Recording:
        """Runs tasks in process, pickling what a remote worker would receive, and keeps it."""

        def submit(self, fn, *args):
            calls.append(pickle.dumps(args))
            return Done(fn(*pickle.loads(calls[-1])))

        def wait(self, handles):
            return handles[:1], handles[1:]

        def result(self, handle):
            return handle.value

        def put(self, value):
            return value

    @contextmanager
    def recording_backend(name, workers, **kwargs):
        yield Recording()

    monkeypatch.setattr(build_module, "task_backend", recording_backend)
    out = tmp_path / "zoo"
    build_zoo(tiny_spec, out, workers=0, progress=False)
    assert len(calls) == len(ZooManifest.read(out).rows) == 10
    for blob in calls:
        # neither the zoo folder nor any file name in it, in any form, reaches a task
        assert str(out).encode() not in blob and str(out.resolve()).encode() not in blob
        assert b"manifest.jsonl" not in blob and b".safetensors" not in blob
    derived = [pickle.loads(b) for b in calls if pickle.loads(b)[3] is not None]
    assert derived and all(isinstance(args[3], ModelBytes) for args in derived)  # parents travel as bytes
    assert _shas(out) == _shas(reference_zoo)


@pytest.fixture(scope="module")
def two_node_cluster():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    cluster.add_node(num_cpus=1, num_gpus=0)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


def test_two_node_cluster_builds_identical_bytes_and_retries_killed_tasks(
    two_node_cluster, tiny_spec, tmp_path, reference_zoo
):
    import ray

    crashes = tmp_path / "crashes"
    crashes.mkdir()
    # Every task's first attempt kills its worker process (as a lost node or an OOM kill would);
    # Ray retries it with the same arguments, and the retry must make the same bytes.
    env = {build_module.CRASH_ONCE_ENV: str(crashes), "MODELPRINT_QUIET": "1"}
    ray.init(address=two_node_cluster.address, runtime_env={"env_vars": env}, log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        out = tmp_path / "zoo"
        manifest = build_zoo(tiny_spec, out, workers=2, backend="ray", progress=False)
    finally:
        ray.shutdown()
    assert _shas(out) == _shas(reference_zoo)  # byte-identical to the in-process build
    assert len(list(crashes.iterdir())) == 10  # every task died once and was retried
    stats = manifest.stats
    assert stats["nodes"] == 2 and stats["models"] == 10  # both nodes built models
    assert stats["data_bytes"] > 0 and 0 < stats["bytes_per_model"] < 10**6
    assert json.loads((out / "build.json").read_text())["name"]


def test_gpu_tasks_are_refused_clearly_where_there_is_no_gpu(two_node_cluster, tiny_spec, tmp_path, monkeypatch):
    import ray
    import torch

    from modelprint.errors import ParameterError
    from modelprint.zoo.build import DataKey, build_model, load_spec

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a node without a GPU, even on a GPU machine
    plan = load_spec(tiny_spec).models[0].to_dict()
    context = {"data": "digits", "split_seed": 0, "train_subset": 0, "device": "cuda", "threads": 1}
    with pytest.raises(ParameterError, match="has no CUDA device"):
        build_model(plan, context, DataKey("digits", 0), None)
    ray.init(address=two_node_cluster.address, log_to_driver=False)
    try:
        with pytest.raises(ParameterError, match="asks for 0.5 GPU but the Ray cluster has 0"):
            build_zoo(tiny_spec, tmp_path / "zoo", workers=2, backend="ray", device="cuda", gpus_per_task=0.5,
                      progress=False)  # fmt: skip
    finally:
        ray.shutdown()


def test_a_reference_set_built_on_the_cluster_has_the_bytes_of_one_built_in_process(two_node_cluster, fresh, tmp_path):
    import ray

    from modelprint.reference import ReferencePlan, build_reference_set

    plan = ReferencePlan(3, archs=[("cnn", {"width": 4})], epochs=1)
    small = {"positives": False, "progress": False}
    ray.init(address=two_node_cluster.address, log_to_driver=False)
    try:
        on_ray = build_reference_set(fresh, plan, tmp_path / "ray", workers=2, backend="ray", **small)
    finally:
        ray.shutdown()
    in_process = build_reference_set(fresh, plan, tmp_path / "local", workers=0, **small)
    assert on_ray["models"] == in_process["models"] and len(on_ray["models"]) == 3
