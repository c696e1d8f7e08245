"""NPE(symmetry=...): group-averaged posteriors, exactly equivariant under D4."""

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from flax import nnx

import astroprob as ap
from astroprob.inference._symmetry import Symmetry, make_symmetry
from astroprob.nn import EquivariantCNN
from astroprob.nn.groups import DihedralGroup
from astroprob.tasks import Task

D4 = DihedralGroup(4)


@pytest.fixture(scope="module")
def task():
    return ap.tasks.SersicGalaxy(stamp_size=32, pixel_scale=0.15 * u.arcsec, noise="gaussian")


@pytest.fixture(scope="module")
def fitted(task):
    """A small NPE with symmetry="D4" on flattened images (all 8 turned images embedded)."""
    npe = ap.NPE(task, symmetry="D4", hidden_features=8, num_transforms=2, num_bins=4)
    # Points of the prior's support and noise images: the shapes NPE checks, without
    # compiling the renderer or the prior's sampler.
    u_draws = jax.random.normal(jax.random.key(0), (120, 7))
    theta = npe._bijection.to_constrained(u_draws)
    x = jax.random.normal(jax.random.key(1), (120, 32, 32)) + theta[:, :1, None] * 1e-3
    npe.fit(jax.random.key(2), theta, x, max_epochs=2, batch_size=20, progress_bar=False)
    return npe, np.asarray(theta), np.asarray(x)


def flow_log_probs(npe, theta, x):
    """``u`` and the flow's ``log q(ρ_g u | g x)`` for every element, ``(batch, 8)``."""
    net = npe.network
    u_vals = npe._bijection.to_unconstrained(jnp.asarray(theta))
    rho = jnp.asarray(net.symmetry.parameter_matrices(), jnp.float32)
    per_element = [
        net._base_log_prob(u_vals @ rho[g].T, net._embed(D4.act_on_images(x, g)))
        for g in range(D4.order)
    ]
    return u_vals, jnp.stack(per_element, axis=1)


def small_d4_network():
    return EquivariantCNN(
        "D4",
        features=4,
        equivariant_outputs=("spin2", "spin1"),
        channels=(2, 4),
        hidden=8,
        rngs=nnx.Rngs(0),
    )


def turned(task, theta, x, g):
    """``(ρ_g θ, g x)`` for element ``g`` of D4."""
    rho = make_symmetry("D4", task, None).parameter_matrices()[g]
    return np.asarray(theta) @ rho.T, np.asarray(D4.act_on_images(x, g))


# ------------------------------------------------------------------ the task's declaration
def test_sersic_parameters_turn_with_the_rendered_image(task):
    """The declared spin-2 ellipticity and spin-1 centre match the renderer, for all of D4."""
    theta = np.array(
        [[2000.0, 0.5, 1.5, 0.3, 0.1, 0.12, -0.05], [900.0, 0.3, 3.0, -0.2, 0.25, -0.08, 0.1]],
        np.float32,
    )
    image = np.asarray(task.render(theta))
    rho = make_symmetry("D4", task, None).parameter_matrices()
    for g in range(D4.order):
        expected = np.asarray(D4.act_on_images(image, g))
        got = np.asarray(task.render((theta @ rho[g].T).astype(np.float32)))
        np.testing.assert_allclose(got, expected, atol=1e-3 * image.max(), err_msg=f"g={g}")
    # Negative control: a wrong declaration (the ellipticity as spin 1) fails at 90 deg.
    wrong = Symmetry(D4, ("trivial",) * 3 + ("spin1", "spin1")).parameter_matrices()[1]
    got = np.asarray(task.render((theta @ wrong.T).astype(np.float32)))
    assert np.abs(got - np.asarray(D4.act_on_images(image, 1))).max() > 0.05 * image.max()


@pytest.mark.parametrize(
    ("blocks", "match"),
    [(("trivial", "spin3"), "cover 3"), (("trivial", "vector"), "block names")],
)
def test_task_rejects_a_bad_parameter_symmetry(blocks, match):
    prior = dist.Normal(jnp.zeros(2), 1.0).to_event(1)
    with pytest.raises(ValueError, match=match):
        Task("t", prior, lambda k, t: t, ("a", "b"), (2,), parameter_symmetry=blocks)


# ------------------------------------------------------------------ the group average
def test_posterior_is_exactly_equivariant(task, fitted):
    npe, theta, x = fitted
    base = npe.posterior(x[:4]).log_prob(theta[:4, None])
    for g in range(1, D4.order):
        t_g, x_g = turned(task, theta[:4], x[:4], g)
        lp = npe.posterior(x_g).log_prob(t_g[:, None].astype(np.float32))
        np.testing.assert_allclose(lp, base, rtol=1e-5, atol=1e-5, err_msg=f"g={g}")


def test_log_prob_is_the_mean_of_the_turned_flows(task, fitted):
    """log q_G = logmeanexp_g log q(ρ_g u | g x), and the flow alone is not equivariant."""
    npe, theta, x = fitted
    net = npe.network
    u_vals, per_element = flow_log_probs(npe, theta[:4], x[:4])
    expected = jax.nn.logsumexp(per_element, axis=1) - np.log(D4.order)
    np.testing.assert_allclose(net.log_prob(u_vals, jnp.asarray(x[:4])), expected, rtol=1e-5)
    # Negative control: the flow's own densities differ between elements.
    assert float(jnp.max(jnp.abs(per_element - per_element[:, :1]))) > 1e-3


def test_training_maximises_the_mean_over_turned_copies(task, fitted):
    """The loss is -mean_g log q(ρ_g u | g x): a lower bound of log q_G (Jensen)."""
    from astroprob.inference.npe import npe_losses

    npe, theta, x = fitted
    net = npe.network
    u_vals, per_element = flow_log_probs(npe, theta[:4], x[:4])
    losses = npe_losses(net, (u_vals, jnp.asarray(x[:4])), 0.0)
    np.testing.assert_allclose(losses, -per_element.mean(axis=1), rtol=1e-5)
    assert np.all(-losses <= net.log_prob(u_vals, jnp.asarray(x[:4])) + 1e-5)
    # Balanced: the penalty is on q_G, the likelihood term the same mean.
    log_prior = jnp.zeros(4)
    balanced = npe_losses(net, (u_vals, jnp.asarray(x[:4]), log_prior), 1e-9)
    np.testing.assert_allclose(balanced, losses, rtol=1e-5)


def test_samples_come_from_the_turned_flows():
    """Each draw is ρ_gᵀ v_g for a uniformly picked g, v_g the flow's draw given c(g x)."""
    sym = Symmetry(D4, ("trivial", "spin2", "spin1"))
    # A "flow" whose draw is its context's first five entries; context g holds v_g.
    v = np.asarray(jax.random.normal(jax.random.key(1), (D4.order, 5)))

    def echo(key, context, n):
        return jnp.broadcast_to(context[:, None, :5], (context.shape[0], n, 5))

    contexts = jnp.broadcast_to(jnp.asarray(v), (3, D4.order, 5))
    draws = np.asarray(sym.sample(echo, jax.random.key(0), contexts, 4000))
    expected = np.einsum("gji,gj->gi", sym.parameter_matrices(), v)  # ρ_gᵀ v_g
    distance = np.linalg.norm(draws[..., None, :] - expected, axis=-1)  # (3, 4000, 8)
    assert distance.min(axis=-1).max() < 1e-5
    counts = np.bincount(distance.argmin(axis=-1).ravel(), minlength=D4.order)
    mean = draws.shape[0] * draws.shape[1] / D4.order
    assert np.all(np.abs(counts - mean) < 5 * np.sqrt(mean))
    # Negative control: ρ_g v_g (the transpose) is not what is drawn.
    wrong = np.einsum("gij,gj->gi", sym.parameter_matrices(), v)
    assert np.linalg.norm(draws[..., None, :] - wrong, axis=-1).min(axis=-1).max() > 1e-2


@pytest.mark.slow  # 10-40 s on 2 cores; kept out of the default tier's 10 minutes
def test_equivariant_embedding_turns_its_features_in_one_pass(task):
    """Features mode (turn the outputs) equals images mode (embed every turned image)."""
    net = small_d4_network()
    fast = make_symmetry("D4", task, net)
    assert fast.mode == "features"
    slow = Symmetry(fast.group, fast.parameter_blocks, None)
    x = jax.random.normal(jax.random.key(5), (3, 32, 32))
    a, b = fast.contexts(net, x), slow.contexts(net, x)
    assert a.shape == b.shape == (3, D4.order, 8)
    np.testing.assert_allclose(a, b, atol=1e-5 * float(jnp.abs(b).max()))
    # Another group's network cannot be turned in feature space.
    c4 = EquivariantCNN("C4", features=4, channels=(2, 4), hidden=8, rngs=nnx.Rngs(0))
    assert make_symmetry("D4", task, c4).mode == "images"


def test_save_and_load_keep_the_symmetry(task, fitted, tmp_path):
    npe, theta, x = fitted
    npe.save(tmp_path / "run")
    loaded = ap.NPE.load(tmp_path / "run", task=task)
    assert loaded.symmetry == "D4"
    np.testing.assert_array_equal(
        loaded.posterior(x[:2]).log_prob(theta[:2, None]),
        npe.posterior(x[:2]).log_prob(theta[:2, None]),
    )


# ------------------------------------------------------------------ bad input
def test_rejects_tasks_and_settings_it_cannot_make_equivariant(task):
    with pytest.raises(ValueError, match="parameter_symmetry"):
        ap.NPE(ap.tasks.get("two_moons"), symmetry="D4")
    with pytest.raises(ValueError, match="pixel grid"):
        ap.NPE(task, symmetry="C8")
    with pytest.raises(ValueError, match="group"):
        ap.NPE(task, symmetry="rotations")
    with pytest.raises(ValueError, match="theta_scaling"):
        ap.NPE(task, symmetry="D4", theta_scaling="linear")
    net = EquivariantCNN("D4", features=4, channels=(2,), hidden=8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="x_scaling"):
        ap.NPE(task, embedding=net, symmetry="D4", x_scaling="per_feature")
    flat = Task(
        "flat",
        dist.Normal(jnp.zeros(2), 1.0).to_event(1),
        lambda k, t: t,
        ("a", "b"),
        (2,),
        parameter_symmetry=("spin1",),
    )
    with pytest.raises(ValueError, match="square image"):
        ap.NPE(flat, symmetry="D4")


def _image_task(prior, blocks, side=8):
    return Task(
        "toy",
        prior,
        lambda k, t: jnp.zeros((side, side)),
        tuple(f"p{i}" for i in range(prior.event_shape[0])),
        (side, side),
        parameter_symmetry=blocks,
    )


def test_rejects_a_box_prior_that_turning_leaves():
    # A wide box, longer in y than in x: its edges lie far beyond the prior's bulk.
    box = dist.Uniform(jnp.array([-5.0, -8.0]), jnp.array([5.0, 8.0])).to_event(1)
    with pytest.raises(ValueError, match="fall outside it"):
        ap.NPE(_image_task(box, ("spin1",)), symmetry="C4")
    square = dist.Uniform(jnp.array([-8.0, -8.0]), jnp.array([8.0, 8.0])).to_event(1)
    assert ap.NPE(_image_task(square, ("spin1",)), symmetry="C4").symmetry == "C4"


def test_sign_parameters_need_mirrors():
    prior = dist.Normal(jnp.zeros(1), 1.0).to_event(1)
    with pytest.raises(ValueError, match="'sign' parameter, which needs a dihedral group"):
        ap.NPE(_image_task(prior, ("sign",)), symmetry="C4")
    assert ap.NPE(_image_task(prior, ("sign",)), symmetry="D4").symmetry == "D4"


def test_sersic_declares_the_symmetry_only_for_a_symmetric_psf():
    from astroprob.tasks.sersic import ImagePSF

    yy, xx = np.mgrid[-7:8, -7:8]
    round_psf = np.exp(-(xx**2 + yy**2) / 8.0)
    lopsided_psf = np.exp(-((xx - 1.5) ** 2 + yy**2) / 8.0)
    for image, declared in ((round_psf, True), (lopsided_psf, False)):
        task = ap.tasks.SersicGalaxy(
            stamp_size=32, pixel_scale=0.15 * u.arcsec, psf=ImagePSF(image, 0.05 * u.arcsec)
        )
        assert (task.parameter_symmetry is not None) == declared


def test_rejects_a_prior_that_is_not_invariant():
    # A centre prior wider in y than in x: turning by 90 deg changes its density.
    lopsided = dist.Normal(jnp.zeros(2), jnp.array([0.05, 0.1])).to_event(1)
    task = ap.tasks.SersicGalaxy(stamp_size=32, pixel_scale=0.15 * u.arcsec, offset_prior=lopsided)
    with pytest.raises(ValueError, match="not invariant under element 1"):
        ap.NPE(task, symmetry="C4")
    # Mirroring alone (D1: the identity and x -> -x) leaves it invariant.
    assert ap.NPE(task, symmetry="D1").symmetry == "D1"


@pytest.mark.slow  # compiles an NPE training epoch with an equivariant CNN (about 30 s)
def test_equivariant_cnn_npe_is_exactly_equivariant(task):
    net = small_d4_network()
    npe = ap.NPE(task, embedding=net, symmetry="D4", hidden_features=8, num_transforms=2)
    theta = npe._bijection.to_constrained(jax.random.normal(jax.random.key(6), (60, 7)))
    x = jax.random.normal(jax.random.key(7), (60, 32, 32))
    npe.fit(jax.random.key(8), theta, x, max_epochs=1, batch_size=20, progress_bar=False)
    base = npe.posterior(x[:3]).log_prob(theta[:3, None])
    for g in range(1, D4.order):
        t_g, x_g = turned(task, theta[:3], x[:3], g)
        lp = npe.posterior(x_g).log_prob(t_g[:, None].astype(np.float32))
        np.testing.assert_allclose(lp, base, rtol=1e-4, atol=1e-4, err_msg=f"g={g}")


@pytest.mark.slow  # compiles an ensemble epoch with the balancing penalty (about 20 s)
def test_ensemble_and_balance_keep_the_symmetry(task, tmp_path):
    npe = ap.NPE(task, symmetry="D4", ensemble=2, balance=10.0, hidden_features=8, num_transforms=1)
    theta = npe._bijection.to_constrained(jax.random.normal(jax.random.key(9), (60, 7)))
    x = jax.random.normal(jax.random.key(10), (60, 32, 32))
    npe.fit(jax.random.key(11), theta, x, max_epochs=1, batch_size=20, progress_bar=False)
    base = npe.posterior(x[:3]).log_prob(theta[:3, None])
    assert np.all(np.isfinite(base))
    for g in (1, 4, 7):
        t_g, x_g = turned(task, theta[:3], x[:3], g)
        lp = npe.posterior(x_g).log_prob(t_g[:, None].astype(np.float32))
        np.testing.assert_allclose(lp, base, rtol=1e-5, atol=1e-5, err_msg=f"g={g}")
    npe.save(tmp_path / "run")
    loaded = ap.NPE.load(tmp_path / "run", task=task)
    assert (loaded.symmetry, loaded.ensemble) == ("D4", 2)
    np.testing.assert_array_equal(loaded.posterior(x[:3]).log_prob(theta[:3, None]), base)
