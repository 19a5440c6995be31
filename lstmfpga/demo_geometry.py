"""The digits demo model's geometry, without torch or scikit-learn (``lstmfpga demo`` checks
its options against it in well under a second, before anything heavy is imported).

``STEPS`` rows of ``FEATURES`` pixels, ``nn.LSTM(FEATURES, HIDDEN)``,
``nn.Linear(HIDDEN, CLASSES)`` on the last step (:mod:`lstmfpga.digits` builds and trains it).
"""

FEATURES, STEPS, HIDDEN, CLASSES = 8, 8, 32, 10
