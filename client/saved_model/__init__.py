"""tg.saved_model: save a tg.Module with its tg.functions and variables, load it in another process.

An export directory holds `saved_model.pb` (a SavedModel proto, proto/saved_model.proto: one
MetaGraphDef whose library has the traced graphs as FunctionDefs, with the serving signatures and the
object graph) and `variables/variables.tgckpt` (the variables, in tg.train.Checkpoint's layout). TF
writes `variables/variables.index` and `.data-*` and keeps the object graph in a SavedObjectGraph;
tensorgrid neither reads TensorFlow's SavedModels nor writes ones TensorFlow reads.
"""

from tensorgrid.client.saved_model.load import LoadOptions, contains_saved_model, load
from tensorgrid.client.saved_model.save import SaveOptions, save

SERVING = "serve"
DEFAULT_SERVING_SIGNATURE_DEF_KEY = "serving_default"

__all__ = ["save", "load", "SaveOptions", "LoadOptions", "contains_saved_model", "SERVING",
           "DEFAULT_SERVING_SIGNATURE_DEF_KEY"]
