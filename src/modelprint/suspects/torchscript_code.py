"""An allow-list over the code in a TorchScript archive, checked before anything loads it.

TorchScript serialises a module's methods as Python-syntax source under ``code/``: every
operator call is written ``torch.<op>(...)`` or ``ops.<namespace>.<op>(...)``. The code is
parsed with :mod:`ast` (never executed) and refused unless every operator it names is a
standard neural-network or tensor operator on the list below; file, storage and
serialisation operators (``from_file``, ``save``, ``load``, ``_load_for_mobile``...),
printing, profiling and custom operator namespaces are not on it. Methods may call only the
methods the archive itself defines and the usual list / dict methods.
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Mapping

import torch

from ..errors import SuspectError

_OPS = """
abs absolute acos acosh adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d adaptive_max_pool1d
adaptive_max_pool2d adaptive_max_pool3d add addbmm addcdiv addcmul addmm addmv alias all allclose amax amin
aminmax any arange argmax argmin argsort as_strided asin asinh atan atan2 atanh avg_pool1d avg_pool2d
avg_pool3d baddbmm batch_norm bernoulli bilinear bitwise_and bitwise_not bitwise_or bitwise_xor bmm
broadcast_tensors broadcast_to bucketize cat ceil celu channel_shuffle chunk clamp clamp_max clamp_min clip
clone concat concatenate constant_pad_nd contiguous conv1d conv2d conv3d conv_transpose1d conv_transpose2d
conv_transpose3d convolution _convolution cos cosh cosine_similarity cross cumprod cumsum deg2rad detach diag
diagonal diff dim div divide dot dropout einsum elu embedding empty empty_like eq erf erfc exp exp2 expand
expand_as expm1 eye feature_dropout alpha_dropout feature_alpha_dropout fill flatten flip fliplr flipud
float_power floor floor_divide fmax fmin fmod frac full full_like gather gcd ge gelu glu greater greater_equal
group_norm gru_cell gt hardshrink hardsigmoid hardswish hardtanh heaviside hypot index index_add index_copy
index_fill index_put index_select instance_norm is_floating_point is_nonzero isclose isfinite isinf isnan item
kthvalue layer_norm le leaky_relu lerp less less_equal lgamma linear linspace log log10 log1p log2 log_sigmoid
log_softmax logaddexp logical_and logical_not logical_or logical_xor logit logsumexp lstm_cell lt masked_fill
masked_scatter masked_select matmul max max_pool1d max_pool2d max_pool3d max_pool1d_with_indices
max_pool2d_with_indices maximum mean median min minimum mish mm mode movedim moveaxis mul multiply mv
nan_to_num narrow native_layer_norm native_batch_norm ne neg negative new_empty new_full new_ones new_zeros
nonzero norm normal numel ones ones_like permute pixel_shuffle pixel_unshuffle pow prelu prod rad2deg rand
rand_like randint randn randn_like reciprocal reflection_pad1d reflection_pad2d relu relu6 remainder repeat
repeat_interleave replication_pad1d replication_pad2d reshape reshape_as resize_as roll rot90 round rrelu
rsqrt rsub scalar_tensor scaled_dot_product_attention scatter scatter_add select selu sigmoid sign silu sin
sinh size slice softmax softplus softshrink sort split split_with_sizes sqrt square squeeze stack std sub
subtract sum swapaxes t tan tanh tensor tensor_split threshold tile to topk transpose tril triu true_divide
trunc type_as unbind unflatten unfold unsqueeze upsample_bilinear2d upsample_nearest1d upsample_nearest2d
upsample_nearest3d upsample_bicubic2d var view view_as where zeros zeros_like _transformer_encoder_layer_fwd
_native_multi_head_attention _softmax _log_softmax _unsafe_view _reshape_alias grid_sampler
affine_grid_generator __and__ __or__ __xor__ __not__ fft_fft fft_ifft fft_fft2 fft_ifft2 fft_fftn fft_ifftn
fft_rfft fft_irfft fft_rfft2 fft_irfft2 fft_rfftn fft_irfftn fft_fftshift fft_ifftshift fft_hfft fft_ihfft
real imag view_as_real view_as_complex complex angle conj conj_physical polar pad append list __range_length
__derive_index _upsample_nearest_exact1d _upsample_nearest_exact2d _upsample_nearest_exact3d upsample_linear1d
_upsample_bilinear2d_aa upsample_trilinear3d _upsample_bicubic2d_aa _upsample_lanczos2d_aa hardsigmoid
softsign tanhshrink local_response_norm channel_shuffle __is__ __isnot__ __contains__ __getitem__
__round_to_zero_floordiv len str format floordiv warn device
is_grad_enabled is_autocast_enabled is_inference_mode_enabled is_nested is_complex is_signed numel
""".split()
ALLOWED_OPS = frozenset(_OPS) | frozenset(f"{op}_" for op in _OPS)  # and their in-place forms
ALLOWED_PRIM = frozenset(
    "NumToTensor min max dtype device layout data shape is_cuda is_cpu unchecked_cast unchecked_unwrap_optional "
    "RaiseException TupleIndex abs requires_grad isinstance type is_nested is_sparse is_mkldnn is_xpu is_meta "
    "is_quantized is_mps is_vulkan is_ipu grad_enabled".split()
)
ALLOWED_BUILTINS = frozenset(
    "getattr int float bool len annotate uninitialized unchecked_cast isinstance range min max abs str list tuple "
    "round enumerate zip divmod hasattr".split()
)
CONTAINER_METHODS = frozenset(
    "append extend insert pop remove clear items keys values get copy index count setdefault __getitem__ "
    "__len__ __contains__ format".split()
)


MAX_TOKENS = 200_000  # per member; a scripted or traced member of a real model has a few thousand


def check_torchscript_code(sources: Mapping[str, str], where: str) -> None:
    """Refuse the archive unless every call in ``sources`` ({member: code}) is allowed. Each
    member is counted in tokens before it is parsed, and parsed twice (its names, then its
    calls), so only one member's tree is ever held (a tree costs up to ~700 bytes a byte of code)."""
    defined: set[str] = set()
    aliases: set[str] = set()
    for name, source in sources.items():
        tree = _parse(source, f"{where}:{name}")
        defined |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        # Scripted code binds the archive's own functions to locals first: ``_0 = __torch__.torch.nn.
        # functional.batch_norm``, then ``_0(...)``; those functions' code is checked like the rest.
        aliases |= {
            n.targets[0].id
            for n in ast.walk(tree)
            if isinstance(n, ast.Assign)
            and len(n.targets) == 1
            and isinstance(n.targets[0], ast.Name)
            and isinstance(n.value, ast.Attribute)
            and (_dotted(n.value) or [""])[0] == "__torch__"
        }
        del tree
    for name, source in sources.items():
        tree = _parse(source, f"{where}:{name}")
        inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and id(node) not in inner:  # whole chains only
                path = _dotted(node)
                if path and path[0] in ("torch", "ops"):
                    _check_operator(path, f"{where}:{name}")
            elif isinstance(node, ast.Call):
                _check_call(node.func, defined, aliases, f"{where}:{name}")
        del tree, inner


def _parse(text: str, where: str) -> ast.Module:
    count = 0
    try:
        for _ in tokenize.generate_tokens(io.StringIO(text).readline):
            count += 1
            if count > MAX_TOKENS:
                raise SuspectError(f"{where} holds more than {MAX_TOKENS} tokens of code, over the limit; refused")
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError, tokenize.TokenError):
        raise SuspectError(f"{where} is not TorchScript code; refused") from None


def _check_operator(path: list[str], where: str) -> None:
    if path[:2] == ["torch", "ops"]:
        path = path[1:]
    if path[0] == "torch" and len(path) == 2 and path[1] in ALLOWED_OPS:
        return
    if path[0] == "ops" and len(path) == 3:
        namespace, op = path[1], path[2]
        if (namespace == "aten" and op in ALLOWED_OPS) or (namespace == "prim" and op in ALLOWED_PRIM):
            return
        if namespace == "math" and op.isidentifier():
            return  # aten's scalar maths (ops.math.sqrt, ...), pure functions of numbers
    raise SuspectError(f"{where} calls {'.'.join(path)}, which is not a standard tensor operator; refused")


def _torch_names() -> frozenset[str]:
    """Every name torch and its tensors answer to: a method of the archive's own that shares one
    (and is not an allowed operator) could be resolved by TorchScript as torch's own."""
    return frozenset(dir(torch)) | frozenset(dir(torch.Tensor))


def _check_call(func: ast.expr, defined: set[str], aliases: set[str], where: str) -> None:
    if isinstance(func, ast.Name):
        if func.id not in ALLOWED_BUILTINS and func.id not in aliases:
            raise SuspectError(f"{where} calls {func.id}(), which TorchScript models do not need; refused")
    elif isinstance(func, ast.Attribute):
        path = _dotted(func)
        if path and path[0] in ("torch", "ops", "__torch__", "CONSTANTS"):
            return  # operators are checked as attributes; __torch__ names are the archive's own classes
        name = func.attr
        if name in CONTAINER_METHODS or name in ALLOWED_OPS:
            return
        if name not in defined or name in _torch_names():
            raise SuspectError(f"{where} calls the method .{name}(), which is not an allowed operator; refused")
    else:  # calling what an expression returns (getattr(...)(...)): nothing TorchScript writes
        raise SuspectError(f"{where} calls the result of an expression; refused")


def _dotted(node: ast.expr) -> list[str] | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]
