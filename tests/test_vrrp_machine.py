"""The VRRPv3 state machine (xdplb.vrrp.machine) against RFC 5798 section 6.4, with explicit times: no
sockets, no sleeping. Each test names the RFC clause it checks; the extensions (fault, resign, claim, hold,
set_priority, preempt_delay) are checked as the module documents them. The timer values are exact:
with a 1 s interval (100 cs) Master_Down_Interval = 3 + (256 - priority) / 256 seconds.

Two deliberate departures from 6.4.3, documented in the module and checked as such (keepalived's way):
a master that steps down sends one last advert first, and a master hearing a lower-priority master
answers it with an advert and announces its VIPs again, where the RFC discards the advert silently."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address

import pytest

from xdplb.vrrp.machine import Announce, Machine, Send, State, Transition
from xdplb.vrrp.packet import master_down_interval, skew_time

pytestmark = pytest.mark.ha

INIT, BACKUP, MASTER, FAULT = State.INIT, State.BACKUP, State.MASTER, State.FAULT
ME = IPv4Address("10.0.0.5")
HIGHER = IPv4Address("10.0.0.9")   # a peer whose address wins a tie against ME
LOWER = IPv4Address("10.0.0.1")    # one whose address loses it
T0 = 1000.0                        # an arbitrary monotonic clock reading


def md(priority: int = 100, interval_cs: int = 100) -> float:
    """Master_Down_Interval in seconds, written out from RFC 5798 6.1 (3 * interval + skew)."""
    return 3 * interval_cs / 100 + (256 - priority) * interval_cs / 100 / 256


def skew(priority: int = 100, interval_cs: int = 100) -> float:
    return (256 - priority) * interval_cs / 100 / 256


def kinds(effects) -> list:
    """The effects without the reasons' wording: Send(p) as is, a transition as (old, new)."""
    return [(e.old, e.new) if isinstance(e, Transition) else e for e in effects]


def backup(priority: int = 100, interval_cs: int = 100, now: float = T0, address=ME, **kw) -> Machine:
    m = Machine(address, priority, interval_cs, **kw)
    assert kinds(m.start(now)) == [(INIT, BACKUP)]
    return m


def master(priority: int = 100, interval_cs: int = 100, now: float = T0, address=ME, **kw) -> Machine:
    """A machine that became master by its master-down timer (no master was heard)."""
    m = backup(priority, interval_cs, now, address, **kw)
    t = m.deadline()
    assert kinds(m.due(t)) == [Send(priority), (BACKUP, MASTER)]
    return m


# ---- the timers themselves (6.1) ------------------------------------------------------------


@pytest.mark.parametrize(("priority", "interval_cs"), [(1, 100), (100, 100), (254, 100), (100, 7), (200, 4095)])
def test_timer_formulas_are_the_rfcs(priority, interval_cs):
    assert skew_time(interval_cs, priority) == pytest.approx(skew(priority, interval_cs))
    assert master_down_interval(interval_cs, priority) == pytest.approx(md(priority, interval_cs))


def test_md_helper_is_exact_for_the_common_case():
    assert md(100) == 3.609375 and skew(100) == 0.609375


# ---- 6.4.1 Initialize ------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [1, 100, 254])
def test_initialize_goes_backup_with_master_down_timer(priority):
    m = Machine(ME, priority, 100)
    assert m.state == INIT and m.deadline() is None
    effects = m.start(T0)
    assert kinds(effects) == [(INIT, BACKUP)]          # no advert from a backup
    assert all(isinstance(e.reason, str) and e.reason for e in effects)
    assert m.state == BACKUP
    assert m.deadline() == pytest.approx(T0 + md(priority))
    assert m.master is None and m.master_priority is None
    assert m.master_interval_cs == 100                 # Master_Adver_Interval := Advertisement_Interval


def test_initialize_master_down_follows_the_interval():
    m = backup(100, interval_cs=25)
    assert m.deadline() == pytest.approx(T0 + md(100, 25))


def test_owner_goes_master_at_once_with_an_advert():
    m = Machine(ME, 255, 100)
    assert kinds(m.start(T0)) == [Send(255), (INIT, MASTER)]
    assert m.state == MASTER
    assert m.deadline() == pytest.approx(T0 + 1.0)    # Adver_Timer := Advertisement_Interval
    assert (m.master, m.master_priority) == (ME, 255)


def test_start_is_idempotent():
    m = backup()
    assert m.start(T0 + 1) == [] and m.deadline() == pytest.approx(T0 + md())
    o = Machine(ME, 255, 100)
    o.start(T0)
    assert o.start(T0 + 0.5) == [] and o.state == MASTER


def test_an_owner_on_hold_starts_backup():
    m = Machine(ME, 255, 100)
    m.hold = True
    assert kinds(m.start(T0)) == [(INIT, BACKUP)]


def test_init_and_fault_have_no_deadline_and_ignore_adverts_but_remember_them():
    m = Machine(ME, 100, 100)
    assert m.deadline() is None
    assert m.advert(HIGHER, 200, 100, T0) == [] and m.state == INIT
    assert (m.master, m.master_priority) == (HIGHER, 200)
    assert m.due(T0 + 100) == [] and m.state == INIT


# ---- 6.4.2 Backup ----------------------------------------------------------------------------


def test_backup_master_down_timer_expiry_makes_master_and_sends():
    m = backup(100)
    down = T0 + md()
    assert m.due(down - 0.001) == [] and m.state == BACKUP
    effects = m.due(down)
    assert kinds(effects) == [Send(100), (BACKUP, MASTER)]
    assert m.state == MASTER and m.deadline() == pytest.approx(down + 1.0)
    assert (m.master, m.master_priority) == (ME, 100)


def test_backup_shutdown_goes_initialize_without_advert():
    m = backup()
    assert kinds(m.shutdown(T0 + 1)) == [(BACKUP, INIT)]
    assert m.state == INIT and m.deadline() is None
    assert m.due(T0 + 100) == []


def test_backup_priority_zero_sets_timer_to_skew_time():
    m = backup(100)
    m.advert(HIGHER, 200, 100, T0 + 1)
    assert m.master == HIGHER
    assert m.advert(HIGHER, 0, 100, T0 + 2) == []
    assert m.state == BACKUP
    assert m.deadline() == pytest.approx(T0 + 2 + skew(100))
    assert m.master is None                          # the master said it is leaving
    assert kinds(m.due(T0 + 2 + skew(100))) == [Send(100), (BACKUP, MASTER)]


def test_backup_priority_zero_skew_uses_the_learned_master_interval():
    m = backup(100, interval_cs=100)
    m.advert(HIGHER, 200, 40, T0 + 1)                # the master advertises every 0.4 s
    m.advert(HIGHER, 0, 40, T0 + 2)
    assert m.deadline() == pytest.approx(T0 + 2 + skew(100, 40))


def test_skew_time_orders_backups_by_priority():
    """After a priority 0 advert the best backup's timer fires first (6.1: Skew_Time)."""
    deadlines = {}
    for p in (50, 100, 200):
        m = backup(p)
        m.advert(HIGHER, 0, 100, T0 + 1)
        deadlines[p] = m.deadline()
    assert deadlines[200] < deadlines[100] < deadlines[50]


@pytest.mark.parametrize("preempt", [True, False])
@pytest.mark.parametrize("their", [100, 101, 254, 255])   # equal or higher: accepted in either mode
def test_backup_accepts_higher_or_equal_priority_and_resets_timer(their, preempt):
    m = backup(100, preempt=preempt)
    assert m.advert(HIGHER, their, 100, T0 + 3) == []
    assert m.state == BACKUP
    assert m.deadline() == pytest.approx(T0 + 3 + md(100))
    assert (m.master, m.master_priority) == (HIGHER, their)
    # the timer keeps being pushed back while adverts come
    for t in (T0 + 4, T0 + 5, T0 + 6):
        assert m.due(t) == []
        m.advert(HIGHER, their, 100, t)
    assert m.state == BACKUP and m.deadline() == pytest.approx(T0 + 6 + md(100))


@pytest.mark.parametrize(("ours", "learned"), [(100, 50), (100, 300), (200, 1), (1, 4095)])
def test_backup_learns_master_adver_interval_and_recomputes_master_down(ours, learned):
    m = backup(ours, interval_cs=100)
    m.advert(HIGHER, 255, learned, T0 + 1)
    assert m.master_interval_cs == learned
    assert m.deadline() == pytest.approx(T0 + 1 + md(ours, learned))
    assert m.due(T0 + 1 + md(ours, learned) - 0.0001) == []
    assert kinds(m.due(T0 + 1 + md(ours, learned))) == [Send(ours), (BACKUP, MASTER)]


def test_backup_with_preempt_discards_a_lower_priority_advert():
    m = backup(150, preempt=True)
    first_deadline = m.deadline()
    for t in (T0 + 1, T0 + 2, T0 + 3):
        assert m.advert(LOWER, 100, 100, t) == []
        assert m.deadline() == first_deadline     # the timer is not reset
    assert m.master is None                       # nor is the sender taken for the master
    assert kinds(m.due(first_deadline)) == [Send(150), (BACKUP, MASTER)]


def test_backup_with_preempt_discards_a_lower_priority_advert_of_another_interval():
    m = backup(150, interval_cs=100, preempt=True)
    m.advert(LOWER, 100, 10, T0 + 1)
    assert m.master_interval_cs == 100            # a discarded advert teaches nothing


def test_backup_without_preempt_accepts_a_lower_priority_master():
    m = backup(150, preempt=False)
    for t in (T0 + 1, T0 + 2, T0 + 5, T0 + 8):
        assert m.due(t) == []
        assert m.advert(LOWER, 100, 100, t) == []
        assert m.deadline() == pytest.approx(t + md(150))
    assert (m.state, m.master, m.master_priority) == (BACKUP, LOWER, 100)


def test_backup_without_preempt_still_takes_over_when_the_master_falls_silent():
    m = backup(150, preempt=False)
    m.advert(LOWER, 100, 100, T0 + 1)
    assert kinds(m.due(T0 + 1 + md(150))) == [Send(150), (BACKUP, MASTER)]


def test_preempt_delay_accepts_a_lower_master_for_that_long_then_preempts():
    m = backup(150, preempt=True, preempt_delay=5.0)
    first_seen = T0 + 1
    # accepted (timer reset, master learned) while the delay runs
    for t in (first_seen, first_seen + 2, first_seen + 4.9):
        assert m.due(t) == []
        assert m.advert(LOWER, 100, 100, t) == []
        assert m.deadline() == pytest.approx(t + md(150))
        assert m.master == LOWER
    last_accepted = first_seen + 4.9
    # from first_seen + delay on, discarded: the timer set by the last accepted one fires
    for t in (first_seen + 5, first_seen + 6, first_seen + 7):
        assert m.advert(LOWER, 100, 100, t) == []
        assert m.deadline() == pytest.approx(last_accepted + md(150))
    assert kinds(m.due(last_accepted + md(150))) == [Send(150), (BACKUP, MASTER)]


def test_preempt_delay_starts_again_after_a_mastership():
    m = backup(150, preempt=True, preempt_delay=5.0)
    m.advert(LOWER, 100, 100, T0)
    m.due(T0 + 5 + md(150))
    assert m.state == MASTER
    m.advert(HIGHER, 200, 100, T0 + 20)            # stepped down
    assert m.state == BACKUP
    m.advert(LOWER, 100, 100, T0 + 30)             # a lower master again: a new delay begins
    assert m.deadline() == pytest.approx(T0 + 30 + md(150)) and m.master == LOWER


def test_preempt_delay_does_not_apply_without_preempt():
    m = backup(150, preempt=False, preempt_delay=1.0)
    for t in (T0 + 1, T0 + 3, T0 + 6):
        m.advert(LOWER, 100, 100, t)
        assert m.deadline() == pytest.approx(t + md(150))


def test_backup_claim_goes_master_at_once():
    m = backup(120)
    m.advert(HIGHER, 150, 100, T0 + 1)
    m.set_priority(151, T0 + 2)                     # the operator's take-over first outranks the master
    assert kinds(m.claim("operator", T0 + 2)) == [Send(151), (BACKUP, MASTER)]
    assert m.deadline() == pytest.approx(T0 + 3)
    assert (m.master, m.master_priority) == (ME, 151)


@pytest.mark.parametrize("state", [INIT, MASTER, FAULT])
def test_claim_elsewhere_than_backup_does_nothing(state):
    m = {INIT: lambda: Machine(ME, 100, 100), MASTER: master, FAULT: _faulted}[state]()
    assert m.claim("operator", T0 + 50) == [] and m.state == state


def test_hold_keeps_a_backup_from_mastership_at_master_down():
    m = backup(100)
    m.advert(HIGHER, 200, 100, T0 + 1)
    m.hold = True
    expiry = T0 + 1 + md()
    assert m.due(expiry) == []
    assert m.state == BACKUP
    assert m.master is None and m.master_priority is None    # nobody is master now
    assert m.deadline() == pytest.approx(expiry + md())      # the timer is armed again
    assert m.due(expiry + md()) == [] and m.state == BACKUP
    m.hold = False
    assert kinds(m.due(m.deadline())) == [Send(100), (BACKUP, MASTER)]


def test_a_backup_on_hold_knows_a_lower_priority_master():
    m = backup(150, preempt=True)
    m.hold = True
    for t in (T0 + 1, T0 + 2, T0 + 3, T0 + 4, T0 + 5):
        assert m.due(t) == []
        m.advert(LOWER, 100, 100, t)
    assert m.state == BACKUP
    assert (m.master, m.master_priority) == (LOWER, 100)


def test_hold_keeps_a_backup_from_mastership_after_priority_zero():
    m = backup(100)
    m.hold = True
    m.advert(HIGHER, 0, 100, T0 + 1)
    assert m.due(T0 + 1 + skew()) == [] and m.state == BACKUP


def test_hold_refuses_a_claim():
    m = backup(100)
    m.hold = True
    assert m.claim("operator", T0 + 1) == [] and m.state == BACKUP


def test_set_priority_in_backup_sends_nothing_but_counts_for_preemption():
    m = backup(100)
    assert m.set_priority(90, T0 + 1) == []
    assert m.priority == 90
    m.advert(LOWER, 95, 100, T0 + 2)                 # 95 >= 90 now: accepted
    assert m.master == LOWER and m.deadline() == pytest.approx(T0 + 2 + md(90))


# ---- 6.4.3 Master ----------------------------------------------------------------------------


def test_master_sends_every_interval():
    m = master(100, interval_cs=50)
    t = m.deadline()
    for _ in range(5):
        assert m.due(t - 0.001) == []
        assert m.due(t) == [Send(100)]
        assert m.deadline() == pytest.approx(t + 0.5)
        t = m.deadline()
    assert m.state == MASTER


def test_master_due_before_the_timer_does_nothing():
    m = master()
    t = m.deadline()
    assert m.due(t - 0.5) == [] and m.deadline() == t


def test_master_shutdown_sends_priority_zero_and_initializes():
    m = master(100)
    assert kinds(m.shutdown(T0 + 10)) == [Send(0), (MASTER, INIT)]
    assert m.state == INIT and m.deadline() is None
    assert m.master is None


def test_master_steps_down_to_a_higher_priority_and_learns_its_interval():
    m = master(100, interval_cs=100)
    effects = m.advert(LOWER, 101, 30, T0 + 10)      # higher priority wins whatever the address
    # the RFC cancels the Adver_Timer and sends nothing; one last advert is the module's (keepalived's)
    assert kinds(effects) == [Send(100), (MASTER, BACKUP)]
    assert m.state == BACKUP
    assert (m.master, m.master_priority, m.master_interval_cs) == (LOWER, 101, 30)
    assert m.deadline() == pytest.approx(T0 + 10 + md(100, 30))


@pytest.mark.parametrize(("ours", "theirs", "steps_down"), [
    ("10.0.0.5", "10.0.0.9", True),
    ("10.0.0.9", "10.0.0.5", False),
    ("10.0.0.9", "10.0.0.10", True),        # numerically, not as text
    ("10.0.0.10", "10.0.0.9", False),
    ("9.255.255.255", "10.0.0.0", True),
    ("192.168.0.1", "10.0.0.1", False),
    ("fe80::9", "fe80::10", True),
    ("fe80::10", "fe80::9", False),
    ("fe80::1:0", "fe80::ffff", False),
])
def test_master_tie_break_on_equal_priority_by_primary_address(ours, theirs, steps_down):
    m = master(100, address=ip_address(ours))
    t = m.deadline() - 0.1
    effects = m.advert(ip_address(theirs), 100, 100, t)
    if steps_down:
        assert kinds(effects) == [Send(100), (MASTER, BACKUP)]
        assert m.state == BACKUP
        assert m.master == ip_address(theirs) and m.deadline() == pytest.approx(t + md(100))
    else:  # the RFC discards it; the module answers (see test_master_answers_a_lower_priority_master)
        assert effects == [Send(100), Announce()] and m.state == MASTER
        assert (m.master, m.master_priority) == (ip_address(ours), 100)


@pytest.mark.parametrize("theirs", [1, 50, 99])
def test_master_answers_a_lower_priority_master(theirs):
    """RFC 5798 6.4.3 discards it; the module (as keepalived) answers at once so the other steps down,
    and announces the VIPs again: after a healed split brain the neighbours may hold the loser's MAC."""
    m = master(100)
    t = m.deadline() - 0.2
    assert m.advert(HIGHER, theirs, 100, t) == [Send(100), Announce()]
    assert m.state == MASTER
    assert m.deadline() == pytest.approx(t + 1.0)     # the answer was this interval's advert
    assert (m.master, m.master_priority, m.master_interval_cs) == (ME, 100, 100)  # nothing learned


def test_master_answers_priority_zero_with_an_advert_at_once():
    m = master(100)
    t = m.deadline() - 0.7
    assert m.advert(HIGHER, 0, 100, t) == [Send(100)]
    assert m.state == MASTER
    assert m.deadline() == pytest.approx(t + 1.0)     # Adver_Timer reset


def test_master_set_priority_advertises_it_at_once():
    m = master(150)
    t = m.deadline() - 0.5
    assert m.set_priority(90, t) == [Send(90)]
    assert m.priority == 90 and m.state == MASTER
    assert m.deadline() == pytest.approx(t + 1.0)
    assert m.set_priority(90, t + 0.1) == []          # unchanged: nothing to say
    assert m.due(m.deadline()) == [Send(90)]


def test_master_with_lowered_priority_steps_down_to_a_peer_now_higher():
    m = master(150)
    m.set_priority(90, T0 + 10)
    assert kinds(m.advert(LOWER, 100, 100, T0 + 10.2)) == [Send(90), (MASTER, BACKUP)]


def test_master_fault_sends_priority_zero():
    m = master(100)
    assert kinds(m.fault("link down", T0 + 10)) == [Send(0), (MASTER, FAULT)]
    assert m.state == FAULT and m.deadline() is None and m.master is None
    assert m.fault("again", T0 + 11) == []


def test_master_resign_sends_priority_zero_then_backup():
    m = master(100)
    effects = m.resign("operator", T0 + 10)
    assert kinds(effects) == [Send(0), (MASTER, BACKUP)]
    assert m.state == BACKUP and m.master is None
    assert m.deadline() == pytest.approx(T0 + 10 + md(100))


@pytest.mark.parametrize("state", [INIT, BACKUP, FAULT])
def test_resign_elsewhere_than_master_does_nothing(state):
    m = {INIT: lambda: Machine(ME, 100, 100), BACKUP: backup, FAULT: _faulted}[state]()
    assert m.resign("operator", T0 + 50) == [] and m.state == state


# ---- fault and recovery ----------------------------------------------------------------------


def _faulted(priority: int = 100) -> Machine:
    m = backup(priority)
    assert kinds(m.fault("tracked interface down", T0 + 1)) == [(BACKUP, FAULT)]
    return m


def test_backup_fault_sends_nothing_and_stops_the_timer():
    m = _faulted()
    assert m.deadline() is None
    assert m.due(T0 + 1000) == [] and m.state == FAULT
    assert m.advert(HIGHER, 0, 100, T0 + 2) == [] and m.state == FAULT


def test_init_fault():
    m = Machine(ME, 100, 100)
    assert kinds(m.fault("no link", T0)) == [(INIT, FAULT)]


def test_recover_goes_backup_with_a_fresh_master_down_timer():
    m = _faulted(100)
    effects = m.recover("link back", T0 + 5)
    assert kinds(effects) == [(FAULT, BACKUP)]
    assert "link back" in effects[0].reason
    assert m.deadline() == pytest.approx(T0 + 5 + md(100))


def test_recover_of_an_owner_goes_master():
    m = Machine(ME, 255, 100)
    m.fault("no link", T0)
    assert kinds(m.recover("link back", T0 + 1)) == [Send(255), (FAULT, MASTER)]
    assert m.deadline() == pytest.approx(T0 + 2)


@pytest.mark.parametrize("state", [INIT, BACKUP, MASTER])
def test_recover_without_fault_does_nothing(state):
    m = {INIT: lambda: Machine(ME, 100, 100), BACKUP: backup, MASTER: master}[state]()
    assert m.recover("nothing", T0 + 50) == [] and m.state == state


def test_recover_resets_the_learned_master_interval():
    m = backup(100, interval_cs=100)
    m.advert(HIGHER, 200, 400, T0 + 1)               # a master advertising every 4 s
    m.fault("link down", T0 + 2)
    m.recover("link back", T0 + 3)
    assert m.master_interval_cs == 100
    assert m.deadline() == pytest.approx(T0 + 3 + md(100, 100))


def test_restart_resets_the_learned_master_interval():
    m = backup(100, interval_cs=100)
    m.advert(HIGHER, 200, 400, T0 + 1)
    m.shutdown(T0 + 2)
    m.start(T0 + 3)
    assert m.deadline() == pytest.approx(T0 + 3 + md(100, 100))


# ---- two machines talking: the effects routed between them ------------------------------------


class Wire:
    """Two machines whose Sends reach each other instantly, stepped through time at 1 ms."""

    def __init__(self, *machines: Machine) -> None:
        self.machines = machines
        self.now = T0
        self.log: list[tuple[float, IPv4Address | IPv6Address, object]] = []
        self.connected = True

    def deliver(self, sender: Machine, effects) -> None:
        for e in effects:
            self.log.append((self.now, sender.address, e))
            if isinstance(e, Send) and self.connected:
                for other in self.machines:
                    if other is not sender:
                        self.deliver(other, other.advert(sender.address, e.priority, sender.interval_cs, self.now))

    def run(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = round(self.now + 0.001, 6)
            for m in self.machines:
                self.deliver(m, m.due(self.now))

    def states(self) -> tuple[State, ...]:
        return tuple(m.state for m in self.machines)


def test_wire_election_failover_and_preemption():
    a, b = Machine(ME, 150, 10), Machine(HIGHER, 100, 10)
    w = Wire(a, b)
    w.deliver(a, a.start(w.now))
    w.deliver(b, b.start(w.now))
    w.run(1.0)
    assert w.states() == (MASTER, BACKUP) and b.master == ME
    # graceful: the backup takes over after its skew time
    w.deliver(a, a.shutdown(w.now))
    stopped = w.now
    w.run(0.2)
    took_over = next(t for t, who, e in w.log if who == HIGHER and isinstance(e, Transition) and e.new == MASTER)
    assert took_over - stopped == pytest.approx(skew(100, 10), abs=0.002)
    # the higher priority returns and preempts after its master-down interval
    w.deliver(a, a.start(w.now))
    back = w.now
    w.run(1.0)
    assert w.states() == (MASTER, BACKUP)
    regained = next(t for t, who, e in w.log if who == ME and isinstance(e, Transition) and e.new == MASTER
                    and t > back)
    assert regained - back == pytest.approx(md(150, 10), abs=0.002)


def test_wire_split_brain_heals_to_the_higher_priority():
    a, b = Machine(ME, 100, 10), Machine(HIGHER, 150, 10)
    w = Wire(a, b)
    w.connected = False
    w.deliver(a, a.start(w.now))
    w.deliver(b, b.start(w.now))
    w.run(1.0)
    assert w.states() == (MASTER, MASTER)
    w.connected = True
    healed = w.now
    w.run(1.0)
    assert w.states() == (BACKUP, MASTER)
    after = [(who, e) for t, who, e in w.log if t > healed]
    # the loser steps down with one last advert, on which the winner announces its VIPs again
    assert kinds(e for who, e in after if who == ME)[:2] == [Send(100), (MASTER, BACKUP)]
    assert (HIGHER, Announce()) in after


def test_wire_equal_priorities_elect_the_higher_address():
    a, b = Machine(IPv6Address("fe80::2"), 100, 10), Machine(IPv6Address("fe80::10"), 100, 10)
    w = Wire(a, b)
    w.connected = False
    w.deliver(a, a.start(w.now))
    w.deliver(b, b.start(w.now))
    w.run(0.5)
    w.connected = True
    w.run(1.0)
    assert w.states() == (BACKUP, MASTER)


def test_wire_nopreempt_keeps_the_lower_master():
    a, b = Machine(ME, 150, 10, preempt=False), Machine(HIGHER, 100, 10)
    w = Wire(a, b)
    w.deliver(b, b.start(w.now))
    w.run(0.5)
    assert b.state == MASTER
    w.deliver(a, a.start(w.now))
    w.run(2.0)
    assert w.states() == (BACKUP, MASTER)


def _reason(effects) -> str:
    return next(e.reason for e in effects if isinstance(e, Transition))


def test_the_reason_of_becoming_master_says_why():
    """Preempting a lower-priority master, a master gone silent, and nobody heard at all read differently
    in the transition history an operator sees."""
    m = backup(150)
    m.advert(LOWER, 100, 100, T0 + 0.5)
    assert _reason(m.due(m.deadline())).startswith(f"preempting {LOWER} (priority 100 < 150)")
    m = backup(100)
    m.advert(HIGHER, 150, 100, T0 + 0.5)
    assert _reason(m.due(m.deadline())).startswith("no advert from the master")
    m = backup(100)
    assert _reason(m.due(m.deadline())) == "no master seen"
    m = backup(150)  # a lower master heard, then a higher one: no longer preempting anyone
    m.advert(LOWER, 100, 100, T0 + 0.1)
    m.advert(HIGHER, 200, 100, T0 + 0.2)
    assert _reason(m.due(m.deadline())).startswith("no advert from the master")
