# Tries to create a file outside its temp dir (the test passes a world-writable directory).
import sys
with open("{TARGET_DIR}/escaped.txt", "w") as f:
    f.write("escaped")
with open("/tmp/prom-sandbox-escaped-{TAG}.txt", "w") as f:
    f.write("escaped")
