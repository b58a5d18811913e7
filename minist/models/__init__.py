"""Models: the teacher (and, in later chapters, the bottleneck, entropy model and student)."""

from .teacher import Teacher, TeacherConfig, build_teacher

__all__ = ["Teacher", "TeacherConfig", "build_teacher"]
