"""Run by CMakeLists.txt with the interpreter gradwire is being built for: prints, one
`key=value` a line, what compiling gradwire._torch_future against this interpreter's torch
needs. When torch cannot be imported, prints the error on stderr and exits with status 1.

Paths are derived from the torch package itself (torch/include, torch/lib), as
torch.utils.cpp_extension does, without importing that module: it needs setuptools, which an
environment that runs torch does not always have."""

import os
import sys

try:
    import torch
except Exception as e:  # noqa: BLE001 - any import failure means "no usable torch"
    print(f"{type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)

root = os.path.dirname(os.path.abspath(torch.__file__))
print(f"version={torch.__version__}")
print(f"git_version={getattr(torch.version, 'git_version', '') or ''}")
print(f"location={root}")
include = os.path.join(root, "include")
print(f"include={include}|{os.path.join(include, 'torch', 'csrc', 'api', 'include')}")
print(f"libdir={os.path.join(root, 'lib')}")
print(f"cxx11_abi={int(torch._C._GLIBCXX_USE_CXX11_ABI)}")
