"""Print jobs: the job service, the queue with its constraints, matching, the scheduler, what agents'
events do to jobs, and the request/response API for scripts over MQTT."""

from . import service
from .component import Jobs
from .matching import Need, Printer, plan
from .passes import run_passes
from .queue import PrintJobCreate, PrintQueue
from .scheduler import Scheduler
from .schemas import ACTIVE_STATES, TERMINAL_STATES, Job, JobCreate, JobState
from .service import InvalidJob, JobConflict, JobError, JobNotFound, JobService, load as load_job_row
from .snapshot import filament_grams, machine, normalize_color

__all__ = [
    "ACTIVE_STATES", "TERMINAL_STATES", "InvalidJob", "Job", "JobConflict", "JobCreate", "JobError", "JobNotFound",
    "JobService", "JobState", "Jobs", "Need", "PrintJobCreate", "PrintQueue", "Printer", "Scheduler", "filament_grams", "machine",
    "load_job_row", "normalize_color", "plan", "run_passes", "service",
]
