# Never ends on its own.
while True:
    pass
