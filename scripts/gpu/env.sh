# Sourced on the GPU machine by bench/gpu.sh and scripts/gpu/*.sh: the CUDA 13 libraries that
# the machine's PyTorch ships (cuBLAS, cudart, nvrtc), and our binaries unpacked from .gpu/
# (built here by scripts/gpu/build.sh, carried xz-compressed).
_cu13="$(python3 -c 'import nvidia, os; print(os.path.join(nvidia.__path__[0], "cu13", "lib"))')"
export LD_LIBRARY_PATH="$_cu13:${LD_LIBRARY_PATH:-}"
GPU_BIN=${GPU_BIN:-/tmp/prom-gpu-bin}
mkdir -p "$GPU_BIN"
for _f in .gpu/*.xz; do
  [ -e "$_f" ] || continue
  _b="$GPU_BIN/$(basename "${_f%.xz}")"
  # Unpacked again when the carried file is newer (a warm machine keeps an older build).
  [ -x "$_b" ] && [ "$_b" -nt "$_f" ] || { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$_f" "$_b"; chmod +x "$_b"; }
done
PROM="$GPU_BIN/prom"
