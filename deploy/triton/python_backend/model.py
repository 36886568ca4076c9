"""Triton python-backend model: the exported ONNX encoder run by onnxruntime, on CPU.

Copied by `artsearch_tools.model_export.triton_repository.write_python_backend_repository` into
`<repository>/<model>/<version>/model.py`, beside that version's `model.onnx`. Its tensors (names, uint8
NHWC input, float32 outputs) come from `config.pbtxt`, so clients see exactly what Triton's onnxruntime
backend would serve from the same file. The stub process needs numpy and onnxruntime importable: the
stub's interpreter runs isolated (PYTHONPATH is ignored), so `config.pbtxt` names a Python environment
holding them in its EXECUTION_ENV_PATH parameter.

Tensors cross the stub boundary by DLPack, never `as_numpy()` / `pb_utils.Tensor(name, array)`: the stub
(Triton 2.51, as shipped in nvidia-pytriton) was built against numpy 1.x, and with numpy 2 those two
read the array descriptor wrongly (garbage inputs, empty outputs). DLPack carries no numpy structs.
"""

from __future__ import annotations

import ctypes
import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# The name DLPack gives a consumed capsule. The stub renames capsules it consumes to "used_dlpack",
# which numpy's capsule destructor does not recognise: it then prints an unraisable ValueError for every
# output tensor (while the stub frees the tensor itself, correctly). Renaming it again silences that.
_USED_CAPSULE_NAME = b"used_dltensor"
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_set_capsule_name.restype = ctypes.c_int


def _output_tensor(name: str, values: np.ndarray) -> Any:
    capsule = np.ascontiguousarray(values, dtype=np.float32).__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _set_capsule_name(capsule, _USED_CAPSULE_NAME)
    return tensor


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config: dict[str, Any] = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        onnx_file = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        self._input_name: str = config["input"][0]["name"]
        self._output_names: list[str] = [output["name"] for output in config["output"]]
        graph_inputs = {i.name for i in self._session.get_inputs()}
        graph_outputs = {o.name for o in self._session.get_outputs()}
        missing = ({self._input_name} - graph_inputs) | (set(self._output_names) - graph_outputs)
        if missing:
            # Fails the model load with this message instead of every request later.
            raise ValueError(f"{onnx_file} lacks tensors {sorted(missing)} named in config.pbtxt")

    def execute(self, requests: list[Any]) -> list[Any]:
        """One onnxruntime run for everything the dynamic batcher gathered, split back per request."""
        batches = [np.from_dlpack(pb_utils.get_input_tensor_by_name(r, self._input_name)) for r in requests]
        try:
            results = self._session.run(self._output_names, {self._input_name: np.concatenate(batches)})
        except Exception as error:  # a failed run answers every request with the reason, not a dead stub
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(error))) for _ in requests]
        bounds = np.cumsum([0, *(len(batch) for batch in batches)])
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    _output_tensor(name, result[start:end])
                    for name, result in zip(self._output_names, results, strict=True)
                ]
            )
            for start, end in itertools.pairwise(bounds)
        ]

    def finalize(self) -> None:
        del self._session
