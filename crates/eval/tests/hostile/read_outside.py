# Tries to read a world-readable file outside its temp dir and leave it where the test can see it.
secret = open("{SECRET_FILE}").read()
with open("{TARGET_DIR}/leaked.txt", "w") as f:
    f.write(secret)
print(secret)
