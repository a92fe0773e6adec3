"""Health checks (issue 8): keepalived's checkers on asyncio, one module per type behind one
interface, and the monitor that runs them and decides up/down.

    probe.py     Target, Result, the Checker interface, make_checker (the table of checkers)
    tcp.py, http.py (HTTP and HTTPS), udp.py, misc.py    one checker each
    monitor.py   HealthMonitor: scheduling, the rise/fall state machine, notify hooks
    effective.py what the verdicts do to the services

Nothing is imported here: effective.py's users (the API process) need none of the asyncio side.
"""
