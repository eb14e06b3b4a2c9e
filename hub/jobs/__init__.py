"""Print jobs: the job service, the queue with its constraints, matching, the scheduler, what agents' events do to jobs, and the MQTT request API for scripts."""
