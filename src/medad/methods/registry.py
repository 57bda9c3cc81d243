"""The explicit list of method modules: importing one registers its method(s)."""

from medad.methods import (
    ae,  # noqa: F401
    ae_grad,  # noqa: F401
    ae_l1,  # noqa: F401
    ae_pl,  # noqa: F401
    ae_spatial,  # noqa: F401
    ae_ssim,  # noqa: F401
    ae_u,  # noqa: F401
    anoddpm,  # noqa: F401
    anomalydino,  # noqa: F401
    autoddpm,  # noqa: F401
    ceae,  # noqa: F401
    constrae,  # noqa: F401
    dae,  # noqa: F401
    draem,  # noqa: F401
    efficientad,  # noqa: F401
    fae,  # noqa: F401
    fanogan,  # noqa: F401
    ganomaly,  # noqa: F401
    memae,  # noqa: F401
    padim,  # noqa: F401
    patchcore,  # noqa: F401
    pddpm,  # noqa: F401
    rd,  # noqa: F401
    rdpp,  # noqa: F401
    recontrast,  # noqa: F401
    resnet18_imagenet,  # noqa: F401
    ssl_onestage,  # noqa: F401
    ssl_twostage,  # noqa: F401
    stfpm,  # noqa: F401
    vae,  # noqa: F401
    vae_grad,  # noqa: F401
)
