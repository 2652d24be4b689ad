"""tg.distribute.experimental: ParameterServerStrategy, its coordinator, CommunicationOptions and friends."""

from tensorgrid.client.distribute.collective_all_reduce_strategy import (  # noqa: F401
    CollectiveCommunication, CommunicationImplementation, CommunicationOptions)
from tensorgrid.client.distribute.parameter_server_strategy import ParameterServerStrategy  # noqa: F401
from tensorgrid.client.distribute.collective_all_reduce_strategy import (  # noqa: F401
    MultiWorkerMirroredStrategy)
from tensorgrid.client.distribute import coordinator  # noqa: F401

__all__ = ["CollectiveCommunication", "CommunicationImplementation", "CommunicationOptions",
           "ParameterServerStrategy", "MultiWorkerMirroredStrategy", "coordinator"]
