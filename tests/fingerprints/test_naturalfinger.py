import numpy as np
import pytest
import torch

from modelprint.attacks import create_attack
from modelprint.bench.runner import check_held_out
from modelprint.errors import ParameterError
from modelprint.fingerprints import Fingerprint, create_method
from modelprint.fingerprints.learnt import cw_loss, random_transform
from modelprint.fingerprints.naturalfinger.gan import GANConfig, save_gan, train_gan
from modelprint.metrics import roc_auc
from modelprint.models import load_model
from modelprint.zoo import ZooManifest, source_row


@pytest.fixture(scope="module")
def trained(tmp_path_factory, splits, training_zoo):
    root = tmp_path_factory.mktemp("nf")
    gan = train_gan(splits.owner, GANConfig(width=32, z_dim=16, steps=300), seed=0, progress=False)
    gan_path = save_gan(gan, root / "gan.safetensors", grid=False)
    manifest = ZooManifest.read(training_zoo)
    source = load_model(manifest.path(source_row(manifest)))
    return {"zoo": str(training_zoo), "gan": str(gan_path), "source": source, "manifest": manifest}


def _method(trained, **kw):
    # fill: at this scale few latents pass the final screen; these tests are about what the queries do
    settings = {"gan": trained["gan"], "trained": trained["zoo"], "iterations": 40, "screen_draws": 2, "fill": True}
    settings.update(kw)
    return create_method("naturalfinger", **settings)


def test_queries_are_images_with_the_sources_labels_and_deterministic(trained, tmp_path):
    fp = _method(trained).generate(trained["source"], n=20, seed=0, progress=False)
    again = _method(trained).generate(trained["source"], n=20, seed=0, progress=False)
    other = _method(trained).generate(trained["source"], n=20, seed=1, progress=False)
    assert fp.x.shape == (20, 1, 8, 8) and fp.x.min() >= 0 and fp.x.max() <= 1
    assert torch.equal(fp.x, again.x) and torch.equal(fp.y, again.y)
    assert not torch.equal(fp.x, other.x)
    assert torch.equal(trained["source"].predict(fp.x), fp.y)
    assert len(fp.meta["trained_models"]) == 8 and fp.meta["flip"] is False  # digits are not mirrored
    # Where the optimisation worked, the trained negatives give the adversarial label, not the source's.
    assert fp.meta["trained_positive_match"] > fp.meta["trained_negative_match"]
    fp.save(tmp_path / "nf.fp.safetensors")
    loaded = Fingerprint.load(tmp_path / "nf.fp.safetensors")
    assert torch.equal(loaded.extra["adversarial"], fp.extra["adversarial"])


def test_separates_held_out_positives_from_independent_models(trained, splits, negatives):
    """Scored on models the method never saw: copies of the source modified and distilled
    with other seeds, against independently trained models."""
    source = trained["source"]
    fp = _method(trained, iterations=60).generate(source, n=50, seed=0, progress=False)
    positives = [
        create_attack("finetune", mode="ftal", epochs=2).apply(source, splits.tune, seed=71),
        create_attack("prune", rate=0.3).apply(source, None, seed=72),
        create_attack("distill", arch="cnn", arch_args={"width": 8}, epochs=4).apply(source, splits.attacker, seed=73),
    ]

    def rate(model):
        return (model.predict(fp.x) == fp.y).float().mean().item()

    pos = np.array([rate(m) for m in positives])
    neg = np.array([rate(m) for m in negatives])
    assert roc_auc(pos, neg) > 0.5 and pos.mean() > neg.mean() + 0.1, (pos, neg)


def test_a_conditional_gan_is_asked_for_every_class_and_the_class_histograms_are_recorded(trained, splits, tmp_path):
    fp = _method(trained, iterations=5).generate(trained["source"], n=20, seed=0, progress=False)
    assert fp.meta["gan_conditional"] is True
    assert sum(fp.meta["candidate_classes"]) == 4 * 40 and len(fp.meta["candidate_classes"]) == 10
    assert fp.meta["query_classes"] == torch.bincount(fp.y, minlength=10).tolist()
    assert 0 <= fp.meta["gan_class_agreement"] <= 1
    # classes asked for alike: 160 candidates, 16 per class; the optimised ones keep their GAN class as y_o
    assert torch.equal(fp.extra["original"], fp.extra["gan_class"])
    # an unconditional GAN (and GAN files from before conditioning) still works: y_o is the positives' majority
    plain = train_gan(splits.owner, GANConfig(width=16, z_dim=8, steps=20, conditional=False), seed=0, progress=False)
    path = save_gan(plain, tmp_path / "plain.safetensors", grid=False)
    fp = _method(trained, gan=str(path), iterations=3).generate(trained["source"], n=10, seed=0, progress=False)
    assert fp.meta["gan_conditional"] is False and "gan_class" not in fp.extra and "gan_class_agreement" not in fp.meta


def test_switching_the_tricks_off_changes_the_queries(trained):
    full = _method(trained, iterations=5).generate(trained["source"], n=10, seed=0, progress=False)
    for trick in ("adversarial_label", "input_transform", "discriminator_loss"):
        fp = _method(trained, iterations=5, **{trick: False}).generate(trained["source"], n=10, seed=0, progress=False)
        assert fp.meta["params"][trick] is False
        assert not torch.equal(fp.x, full.x), trick


def test_needs_a_gan_and_a_training_zoo_of_the_same_source(trained):
    with pytest.raises(ParameterError, match="needs a GAN and trained models"):
        create_method("naturalfinger").generate(trained["source"], n=5, seed=0, progress=False)
    other = create_attack("prune", rate=0.3).apply(trained["source"], None, seed=1)  # other weights for sure
    with pytest.raises(ParameterError, match="built from another source"):
        _method(trained).generate(other, n=5, seed=0, progress=False)


def test_bench_refuses_a_suspect_the_method_learnt_from(trained):
    rows = trained["manifest"].rows
    src = source_row(trained["manifest"])
    records = [{"id": r["id"], "sha256": r["sha256"]} for r in rows]
    meta = {"naturalfinger": {"method": "naturalfinger", "trained_models": records}}
    with pytest.raises(ParameterError, match="learnt from 7 model"):
        check_held_out(meta, rows, src)
    check_held_out(meta, [src], src)  # the source is shared by design and never scored
    check_held_out({"c": {"method": "c"}}, rows, src)


def test_cw_loss_and_transforms():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 5.0]])
    assert torch.allclose(cw_loss(logits, torch.tensor([0, 0]), kappa=1.0), torch.tensor([-1.0, 5.0]))
    x = torch.rand(6, 1, 8, 8, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    out = random_transform(x, g, flip=True, translate=0.1, shear=0.1, noise=0.05)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    same = random_transform(x, torch.Generator(), flip=False, translate=0, shear=0, noise=0)
    assert torch.allclose(same, x, atol=1e-5)


def test_only_queries_that_pass_the_screen_are_kept_unless_fill_says_so(trained, monkeypatch):
    from modelprint.fingerprints.naturalfinger.method import screened_queries

    ok = torch.tensor([False, True, False, True, True])
    score = torch.tensor([0.9, 0.5, 0.8, 0.7, 0.6])
    assert screened_queries(ok, score, 2, fill=False) == [3, 4]  # successes, best first
    assert screened_queries(ok, score, 10, fill=False) == [3, 4, 1]  # a smaller fingerprint, no failure
    assert screened_queries(ok, score, 5, fill=True) == [3, 4, 1, 0, 2]  # topped up with the best failures
    # when no latent passes, generation is refused, naming the models that resisted most
    from modelprint.fingerprints.naturalfinger import method as nf_module

    def nothing_passes(nets, targets, views):
        n = len(views[0])
        return torch.zeros(n, dtype=torch.bool), torch.zeros(n), [i % 3 for i in range(len(nets))]

    with monkeypatch.context() as m:
        m.setattr(nf_module, "final_screen", nothing_passes)
        refused = r"none of the 20 optimised latents passed .*fewest successes: .* 0/20"
        with pytest.raises(ParameterError, match=refused):
            _method(trained, fill=False, iterations=2).generate(trained["source"], n=10, seed=0, progress=False)
    fp = _method(trained).generate(trained["source"], n=10, seed=0, progress=False)
    assert fp.meta["filled"] == 10 - fp.meta["kept_successes"] and fp.meta["screen_views"] == 3
    screened = set(fp.meta["screen_per_model"]) | set(fp.meta["held_out_models"])
    assert screened == {r["id"] for r in fp.meta["trained_models"]}
    assert f"{fp.meta['filled']} failures of the screen kept to fill n" in create_method("naturalfinger").summary(fp)
    flat = _method(trained, input_transform=False).generate(trained["source"], n=10, seed=0, progress=False)
    assert flat.meta["screen_views"] == 1  # the screen honours the transformation switch


def test_held_out_trained_models_are_never_the_source_and_always_of_both_kinds(trained):
    from modelprint.fingerprints.learnt import load_trained
    from modelprint.fingerprints.naturalfinger.method import split_trained

    everything = load_trained(trained["zoo"], trained["source"])
    ids = [r["id"] for r in everything.records]
    for share in (0.25, 0.5):
        used, held = split_trained(everything, share, torch.Generator().manual_seed(0))
        assert used.positives[0] is trained["source"] and used.records[0]["id"] == ids[0]
        assert held.positives and held.negatives and used.negatives  # one of each held out, one negative left
        assert sorted(r["id"] for r in used.records + held.records) == sorted(ids)
    used, held = split_trained(everything, 0.0, torch.Generator().manual_seed(0))
    assert not held.records and [r["id"] for r in used.records] == ids


def test_the_kept_queries_are_screened_on_held_out_trained_models(trained):
    fp = _method(trained, holdout=0.5).generate(trained["source"], n=10, seed=0, progress=False)
    held = fp.meta["held_out_models"]
    assert held and not set(held) & set(fp.meta["screen_per_model"])  # held out of the optimisation and its screen
    passed, kept = (int(v) for v in fp.meta["held_out_screen"].split("/"))
    assert kept == len(fp) and fp.meta["held_out_pass_rate"] == round(passed / kept, 4)
    assert set(fp.meta["held_out_per_model"]) == set(held)
    summary = create_method("naturalfinger").summary(fp)
    assert f"held-out trained models ({len(held)}): {fp.meta['held_out_screen']} queries pass" in summary
    assert f"class-conditional GAN; query classes {fp.meta['query_classes']}" in summary


def test_the_search_stops_once_n_latents_reach_the_objective(trained):
    from modelprint.fingerprints.naturalfinger.gan import load_gan

    gan = load_gan(trained["gan"])
    source = trained["source"]
    nf = _method(trained, iterations=30, screen_every=10)
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, gan.z_dim, generator=g)
    c = torch.arange(6) % 10
    mine = source.predict(gan.sample(z, c))

    def views(x):
        return [x]

    # every latent already gives the source's own labels: the objective is met at the first check
    _, ran = nf._optimise(gan, z.clone(), c, [source], [mine], 1, lambda x: x, views, 3, g, False)
    assert ran == 10
    # a label no model gives (a class the source never predicts here) is never reached: all iterations run
    never = (mine + 1) % 10
    _, ran = nf._optimise(gan, z.clone(), c, [source, source], [mine, never], 1, lambda x: x, views, 3, g, False)
    assert ran == 30
    # ... unless the pass count stalls for `patience` checks: 0 at 10 (the best so far), 0 at 20 and 30
    stalls = _method(trained, iterations=100, screen_every=10, patience=2)
    _, ran = stalls._optimise(gan, z.clone(), c, [source, source], [mine, never], 1, lambda x: x, views, 3, g, False)
    assert ran == 30


def test_trained_records_name_the_models_they_sit_beside(trained, tmp_path):
    """A manifest lists models in build order, which with several workers interleaves positives
    and negatives; each record (the ids the screens report) must be that of the model at the
    same position."""
    import shutil

    from modelprint.fingerprints.learnt import load_trained
    from modelprint.models import weights_digest

    zoo = shutil.copytree(trained["zoo"], tmp_path / "zoo")
    lines = (zoo / "manifest.jsonl").read_text().splitlines()
    (zoo / "manifest.jsonl").write_text("\n".join(lines[::-1]) + "\n")  # negatives first, then positives
    roles = [r["role"] for r in ZooManifest.read(zoo).rows]
    assert roles != sorted(roles, key=lambda role: role != "positive")
    everything = load_trained(str(zoo), trained["source"])
    models = everything.positives + everything.negatives
    assert [weights_digest(m) for m in models] == [r["sha256"] for r in everything.records]
    assert [r["role"] for r in everything.records] == ["positive"] * len(everything.positives) + ["negative"] * len(
        everything.negatives
    )
    category = {r["sha256"]: r["category"] for r in trained["manifest"].rows}
    assert everything.categories == [category[r["sha256"]] for r in everything.records]


def test_named_models_are_screened_but_not_optimised_against(trained):
    fp = _method(trained, iterations=5, screen_only="independent-distill").generate(
        trained["source"], n=10, seed=0, progress=False
    )
    students = {r["id"] for r in trained["manifest"].rows if r["category"] == "independent-distill"}
    assert len(students) == 2 and students <= set(fp.meta["held_out_models"]) & set(fp.meta["held_out_per_model"])
    assert not students & set(fp.meta["screen_per_model"])
    # patterns match ids too; the source is never held out, though the first pattern matches its id
    from modelprint.fingerprints.learnt import load_trained

    everything = load_trained(trained["zoo"], trained["source"])
    source_id = source_row(trained["manifest"])["id"]
    method = _method(trained, holdout=0.0, screen_only=f"{source_id.replace('[', '[[]')}* *(attacker*distill*")
    used, held = method.split(everything, seed=0)
    derived = {r["id"] for r in trained["manifest"].rows if r["id"].startswith(source_id + "-")}
    students = {r["id"] for r in trained["manifest"].rows if r["category"] == "independent-distill"}
    independents = {r["id"] for r in trained["manifest"].rows if r["category"] == "independent"}
    assert used.records[0]["id"] == source_id and used.positives == [trained["source"]]
    assert {r["id"] for r in used.records[1:]} == independents
    assert len(derived) == 3 and {r["id"] for r in held.records} == derived | students
    with pytest.raises(ParameterError, match=r"screen_only: \*advtrain\* matches no trained model"):
        _method(trained, screen_only="*advtrain*").split(everything, seed=0)
    with pytest.raises(ParameterError, match="leaves no negative trained model"):
        _method(trained, screen_only="independent  *distill*").generate(trained["source"], n=10, seed=0, progress=False)


def test_shell_keeps_the_latents_where_the_prior_puts_its_mass(trained):
    on = _method(trained, iterations=20, shell=True).generate(trained["source"], n=10, seed=0, progress=False)
    off = _method(trained, iterations=20).generate(trained["source"], n=10, seed=0, progress=False)
    assert on.meta["latent_norm"] == pytest.approx(1.0, abs=1e-3)
    d = on.extra["latent"].shape[1]
    assert torch.allclose(on.extra["latent"].norm(dim=1), torch.full((10,), d**0.5), atol=1e-3)
    assert abs(off.meta["latent_norm"] - 1.0) > 1e-3 and not torch.equal(on.x, off.x)
