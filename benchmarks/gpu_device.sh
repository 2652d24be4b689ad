#!/bin/bash
# The GPU checks in one command for a lent GPU machine (the device tool runs it from the repo root,
# with $OUT its output folder): installs without dependencies, prints versions, runs tests/test_gpu.py, the op
# battery on GPU:0 (-k gpu) and benchmarks/gpu.py --skip-tests, each under a time limit, logs under $OUT.
# Two runs on an H200 (2026-12-04) took 163 s and 206 s (README, "GPUs", says what they printed).
export PYTHONUNBUFFERED=1
T_GPU=${T_GPU:-90}; T_BAT=${T_BAT:-200}; T_BENCH=${T_BENCH:-110}
python3 -m pip install -q --no-deps --no-build-isolation -e . > $OUT/pip.log 2>&1 || { tail -20 $OUT/pip.log; exit 1; }
python3 -c "import cupy, numpy, grpc, google.protobuf as p, sys; print('py', sys.version.split()[0], 'cupy', cupy.__version__, 'numpy', numpy.__version__, 'grpc', grpc.__version__, 'protobuf', p.__version__)"
nvidia-smi -L
echo "== tests/test_gpu.py"
timeout $T_GPU python3 -m pytest -q -rs -p no:cacheprovider -o timeout=60 --tb=short tests/test_gpu.py > $OUT/test_gpu.log 2>&1; echo "rc $?"
grep -E "passed|failed|Error|error" $OUT/test_gpu.log | tail -25
echo "== battery -k gpu $(date +%T)"
timeout $T_BAT python3 -m pytest -q -p no:cacheprovider -o timeout=60 --tb=line --maxfail=200 -k gpu \
  tests/test_math_ops.py tests/test_array_ops.py tests/test_nn_ops.py tests/test_random_ops.py tests/test_misc_ops.py \
  tests/test_scatter_ops.py tests/test_embedding_ops.py tests/test_control_flow.py > $OUT/battery.log 2>&1; echo "rc $?"
tail -3 $OUT/battery.log; date +%T; grep -E "^(/|E ).*" $OUT/battery.log | sed 's/^.*tests/tests/' | sort | uniq -c | sort -rn | head -30
echo "== benchmarks/gpu.py --skip-tests $(date +%T)"
timeout $T_BENCH python3 benchmarks/gpu.py --skip-tests 2>&1 | tee $OUT/bench.log | tail -30
