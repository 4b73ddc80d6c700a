# gdb commands for greenev programs, live or post mortem (core files):
#
#   gdb -x tools/greenev-gdb.py PROGRAM [CORE | -p PID]
#   (gdb) greenev-list        every greenlet of every thread: id, name, state,
#                             what it waits on, parent, spawn site
#   (gdb) greenev-bt ID       backtrace of suspended greenlet ID: its stack, unwound
#                             from the registers Boost.Context saved when it switched
#                             away (shown as the callers of the thread's frame #0)
#
# Needs no debug information: it walks greenev_debug_threads (the registry of
# thread states) with the field offsets the library exports in
# greenev_debug_layout (greenlet/src/greenlet.cpp). x86-64 SysV only (the
# fcontext layout below). docs/design.md, "Debugging with gdb".
import datetime
import struct

import gdb
import gdb.unwinder
from gdb.unwinder import Unwinder

LAYOUT_VERSION = 1
LAYOUT_FIELDS = [
    "version", "ts_current", "ts_main", "ts_active_head", "ts_debug_next", "ts_os_thread_id",
    "g_state", "g_context", "g_parent", "g_id", "g_active_next", "g_name", "g_spawn_site",
    "g_wait_what", "g_wait_fd", "g_wait_until", "g_is_main",
]
STATES = {0: "unstarted", 1: "active", 2: "dead"}
# What Boost.Context's jump_fcontext (x86_64 SysV ELF) pushes below the
# return address before it saves the stack pointer as the fcontext:
#   +0x00 mxcsr, x87 control word   +0x08 r12   +0x10 r13   +0x18 r14
#   +0x20 r15   +0x28 rbx   +0x30 rbp   +0x38 return address
# and the resumed stack pointer is fcontext + 0x40.
FCONTEXT_REGISTERS = [("r12", 0x08), ("r13", 0x10), ("r14", 0x18), ("r15", 0x20), ("rbx", 0x28), ("rbp", 0x30)]
FCONTEXT_PC = 0x38
FCONTEXT_SP = 0x40


def _memory(address, size):
    return bytes(gdb.selected_inferior().read_memory(address, size))


def _u64(address):
    return struct.unpack("<Q", _memory(address, 8))[0]


def _i32(address):
    return struct.unpack("<i", _memory(address, 4))[0]


def _u8(address):
    return _memory(address, 1)[0]


def _f64(address):
    return struct.unpack("<d", _memory(address, 8))[0]


def _c_string(address, limit=256):
    if address == 0:
        return None
    data = b""
    while len(data) < limit:
        chunk = _memory(address + len(data), 16)
        end = chunk.find(b"\0")
        if end >= 0:
            return (data + chunk[:end]).decode("utf-8", "replace")
        data += chunk
    return data.decode("utf-8", "replace")


def _symbol_address(name):
    return int(gdb.parse_and_eval("(unsigned long)&%s" % name))


def _layout():
    base = _symbol_address("greenev_debug_layout")
    version = _u64(base)
    if version != LAYOUT_VERSION:
        raise gdb.GdbError("greenev: greenev_debug_layout version %d, this script knows %d" % (version, LAYOUT_VERSION))
    return {name: _u64(base + 8 * i) for i, name in enumerate(LAYOUT_FIELDS)}


def _name(g, layout):
    string = _u64(g + layout["g_name"])  # std::atomic<std::string*>: one pointer, libstdc++ string layout
    if string != 0:
        size = _u64(string + 8)
        if 0 < size < 4096:
            return _memory(_u64(string), size).decode("utf-8", "replace")
    if _u8(g + layout["g_is_main"]):
        return "main"
    return "greenlet-%d" % _u64(g + layout["g_id"])


def _code_location(address):
    if address == 0:
        return ""
    text = gdb.execute("info symbol 0x%x" % address, to_string=True).strip()
    if text.startswith("No symbol"):
        text = "0x%x" % address
    line = gdb.find_pc_line(address)
    if line.symtab is not None:
        text += " at %s:%d" % (line.symtab.filename, line.line)
    return text


class greenlet_record:
    def __init__(self, g, ts, layout, current, thread_id):
        self.address = g
        self.thread_id = thread_id
        self.id = _u64(g + layout["g_id"])
        self.name = _name(g, layout)
        self.running = g == current
        self.state = STATES.get(_u8(g + layout["g_state"]), "?")
        self.context = _u64(g + layout["g_context"])
        parent = _u64(g + layout["g_parent"])
        self.parent = _name(parent, layout) if parent != 0 else None
        self.spawn_site = _u64(g + layout["g_spawn_site"])
        self.wait_what = _c_string(_u64(g + layout["g_wait_what"]))
        self.wait_fd = _i32(g + layout["g_wait_fd"])
        self.wait_until = _f64(g + layout["g_wait_until"])

    def describe(self):
        if self.running:
            state = "running"
        elif self.wait_what is not None:
            state = "suspended on " + ("fd %d " % self.wait_fd if self.wait_fd >= 0 else "") + self.wait_what
            if self.wait_until > 0:
                until = datetime.datetime.fromtimestamp(self.wait_until, datetime.timezone.utc)
                state += " until %s UTC" % until.strftime("%H:%M:%S.%f")[:-3]
        elif self.state == "active":
            state = "suspended"
        else:
            state = self.state
        text = 'greenlet %d "%s": %s' % (self.id, self.name, state)
        if self.parent is not None:
            text += "; parent " + self.parent
        if self.spawn_site:
            text += "; spawned at " + _code_location(self.spawn_site)
        return text


def _threads():
    """[(os thread id, [greenlet_record])] for every registered thread state."""
    layout = _layout()
    result = []
    ts = _u64(_symbol_address("greenev_debug_threads"))
    while ts != 0:
        thread_id = _i32(ts + layout["ts_os_thread_id"])
        current = _u64(ts + layout["ts_current"])
        records = [greenlet_record(_u64(ts + layout["ts_main"]), ts, layout, current, thread_id)]
        g = _u64(ts + layout["ts_active_head"])
        while g != 0 and len(records) < 1000000:
            records.append(greenlet_record(g, ts, layout, current, thread_id))
            g = _u64(g + layout["g_active_next"])
        result.append((thread_id, records))
        ts = _u64(ts + layout["ts_debug_next"])
    return result


class greenev_list(gdb.Command):
    """List every greenlet of every thread: greenev-list"""

    def __init__(self):
        super().__init__("greenev-list", gdb.COMMAND_STACK)

    def invoke(self, argument, from_tty):
        threads = _threads()
        if not threads:
            print("greenev: no thread has greenlets")
        for thread_id, records in threads:
            print("thread %d (LWP): %d greenlets" % (thread_id, len(records)))
            for record in records:
                print("  " + record.describe())


class greenev_bt(gdb.Command):
    """Backtrace of a suspended greenlet: greenev-bt ID [bt arguments]"""

    def __init__(self):
        super().__init__("greenev-bt", gdb.COMMAND_STACK)

    def invoke(self, argument, from_tty):
        words = argument.split()
        if not words:
            raise gdb.GdbError("usage: greenev-bt ID [bt arguments]")
        wanted = int(words[0], 0)
        for _, records in _threads():
            for record in records:
                if record.id == wanted:
                    return self._backtrace(record, " ".join(words[1:]))
        raise gdb.GdbError("greenev: no live greenlet with id %d" % wanted)

    def _backtrace(self, record, bt_arguments):
        if record.running:
            raise gdb.GdbError("greenev: greenlet %d is running: select its thread (LWP %d) and use bt"
                               % (record.id, record.thread_id))
        if record.context == 0:
            raise gdb.GdbError("greenev: greenlet %d has no saved context (%s)" % (record.id, record.state))
        context = record.context
        registers = [(name, _u64(context + offset)) for name, offset in FCONTEXT_REGISTERS]
        registers += [("rsp", context + FCONTEXT_SP), ("rip", _u64(context + FCONTEXT_PC))]
        print('greenlet %d "%s" (frame #0 is the selected thread\'s own; the greenlet\'s stack follows)'
              % (record.id, record.name))
        _switch_unwinder.registers = registers
        gdb.invalidate_cached_frames()
        try:
            gdb.execute("bt " + bt_arguments)
        finally:
            _switch_unwinder.registers = None
            gdb.invalidate_cached_frames()


class _frame_id:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


class _greenlet_unwinder(Unwinder):
    """While greenev-bt runs: the caller of frame #0 is the greenlet's saved context.
    (An unwinder rather than `set $pc`: registers cannot be written in a core file.)"""

    def __init__(self):
        super().__init__("greenev-greenlet")
        self.registers = None

    def __call__(self, pending_frame):
        if self.registers is None or pending_frame.level() != 0:
            return None
        # gdb refuses a caller "inner" to (below) its callee; the greenlet's
        # stack may lie anywhere, so frame #0's id claims a stack address
        # below the greenlet's.
        greenlet_sp = dict(self.registers)["rsp"]
        own_sp = pending_frame.read_register("rsp")
        claimed_sp = gdb.Value(min(int(own_sp), greenlet_sp - 16)).cast(own_sp.type)
        frame_id = _frame_id(claimed_sp, pending_frame.read_register("rip"))
        info = pending_frame.create_unwind_info(frame_id)
        for name, value in self.registers:
            register_type = pending_frame.read_register(name).type
            info.add_saved_register(name, gdb.Value(value).cast(register_type))
        return info


_switch_unwinder = _greenlet_unwinder()
gdb.unwinder.register_unwinder(None, _switch_unwinder, replace=True)
greenev_list()
greenev_bt()
