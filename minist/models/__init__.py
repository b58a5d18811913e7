"""The models: the teacher, and the Entropic Student's parts (bottleneck, prior, latent codecs, student), task
networks, learned image codecs, and how each is saved and loaded (``store``)."""

from .teacher import Teacher, TeacherConfig, build_teacher

__all__ = ["Teacher", "TeacherConfig", "build_teacher"]
