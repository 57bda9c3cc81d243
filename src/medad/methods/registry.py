"""The explicit list of method modules: importing one registers its method(s)."""

from medad.methods import ae  # noqa: F401
from medad.methods import vae  # noqa: F401
from medad.methods import ae_grad  # noqa: F401
from medad.methods import vae_grad  # noqa: F401
from medad.methods import ganomaly  # noqa: F401
from medad.methods import ae_l1  # noqa: F401
from medad.methods import ae_ssim  # noqa: F401
from medad.methods import ae_spatial  # noqa: F401
from medad.methods import constrae  # noqa: F401
from medad.methods import ceae  # noqa: F401
from medad.methods import memae  # noqa: F401
from medad.methods import ae_u  # noqa: F401
from medad.methods import ssl_twostage  # noqa: F401
from medad.methods import resnet18_imagenet  # noqa: F401
from medad.methods import ssl_onestage  # noqa: F401
from medad.methods import fanogan  # noqa: F401
from medad.methods import dae  # noqa: F401
from medad.methods import draem  # noqa: F401
from medad.methods import ae_pl  # noqa: F401
