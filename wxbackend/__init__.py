"""wxbackend: the backend of the 政务服务好差评 WeChat mini-program."""

__version__ = "0.1.0"
