"""One-off weight-porting scripts (PyTorch -> Keras) for Artsite's backbones.

Nothing here is imported by the product at run time; the scripts document and
reproduce how the files in ``inference/weights/backbones/`` were made.
"""
