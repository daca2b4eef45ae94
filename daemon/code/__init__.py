"""The machine's code interpreter: its kernels (``kernels``), which Python runs them
(``launch``), a run's answer gathered from its kernel (``output``), and the machine's own Python
site that ``pip install`` writes to (``site``)."""
