using System.Runtime.InteropServices;

namespace HarnessServer.Sandbox;

/// <summary>
/// The system calls a sandboxed command is denied (EPERM), in this one list, and the classic BPF program bubblewrap
/// installs for them (<c>--seccomp</c>) just before it runs the command. An agent's command never needs to trace
/// another process, mount, touch kernel keyrings, load BPF or kernel modules, reboot or set the clock; each is a
/// common first step of a kernel exploit. Other architectures' calls (the 32-bit and x32 ABIs) are denied as a whole.
/// Only x86-64 has a table here; elsewhere no filter is built and <see cref="Filter"/> is null.
/// </summary>
internal static class SeccompFilter
{
    /// <summary>x86-64 numbers of the denied calls (<c>arch/x86/entry/syscalls/syscall_64.tbl</c>).</summary>
    public static readonly IReadOnlyDictionary<string, uint> DeniedX64 = new Dictionary<string, uint>
    {
        ["ptrace"] = 101, ["process_vm_readv"] = 310, ["process_vm_writev"] = 311, ["kcmp"] = 312,
        ["mount"] = 165, ["umount2"] = 166, ["pivot_root"] = 155, ["swapon"] = 167, ["swapoff"] = 168,
        ["open_tree"] = 428, ["move_mount"] = 429, ["fsopen"] = 430, ["fsconfig"] = 431, ["fsmount"] = 432,
        ["fspick"] = 433, ["mount_setattr"] = 442, ["unshare"] = 272, ["setns"] = 308,
        ["add_key"] = 248, ["request_key"] = 249, ["keyctl"] = 250,
        ["bpf"] = 321, ["perf_event_open"] = 298, ["userfaultfd"] = 323,
        ["io_uring_setup"] = 425, ["io_uring_enter"] = 426, ["io_uring_register"] = 427,
        ["init_module"] = 175, ["finit_module"] = 313, ["delete_module"] = 176,
        ["reboot"] = 169, ["kexec_load"] = 246, ["kexec_file_load"] = 320,
        ["acct"] = 163, ["settimeofday"] = 164, ["clock_settime"] = 227, ["clock_adjtime"] = 305, ["adjtimex"] = 159,
        ["open_by_handle_at"] = 304, ["name_to_handle_at"] = 303, ["quotactl"] = 179,
        ["iopl"] = 172, ["ioperm"] = 173, ["syslog"] = 103, ["vhangup"] = 153, ["lookup_dcookie"] = 212,
    };

    private const uint AuditArchX8664 = 0xC000003E;
    private const uint X32Bit = 0x40000000;
    private const uint RetAllow = 0x7FFF0000;
    private const uint RetErrnoEperm = 0x00050000 | 1;
    private const uint RetKillProcess = 0x80000000;

    // struct seccomp_data: int nr at 0, __u32 arch at 4.
    private const ushort LdAbsW = 0x20, JeqK = 0x15, JgeK = 0x35, RetK = 0x06;

    /// <summary>The program as bytes of <c>struct sock_filter[]</c>, or null where there is no table for the architecture.</summary>
    public static byte[]? Filter { get; } = RuntimeInformation.ProcessArchitecture == Architecture.X64 ? Build(DeniedX64.Values) : null;

    private static byte[] Build(IEnumerable<uint> denied)
    {
        var numbers = denied.Distinct().Order().ToArray();
        var program = new List<(ushort Code, byte Jt, byte Jf, uint K)>
        {
            (LdAbsW, 0, 0, 4),
            (JeqK, 1, 0, AuditArchX8664),
            (RetK, 0, 0, RetKillProcess),
            (LdAbsW, 0, 0, 0),
            // x32 calls reach the same kernel code under other numbers.
            (JgeK, (byte)(numbers.Length + 1), 0, X32Bit),
        };
        for (var i = 0; i < numbers.Length; i++)
        {
            // Matched: jump to the deny at the end (the allow sits between).
            program.Add((JeqK, (byte)(numbers.Length - i), 0, numbers[i]));
        }

        program.Add((RetK, 0, 0, RetAllow));
        program.Add((RetK, 0, 0, RetErrnoEperm));

        var bytes = new byte[program.Count * 8];
        for (var i = 0; i < program.Count; i++)
        {
            var (code, jt, jf, k) = program[i];
            var at = bytes.AsSpan(i * 8);
            BitConverter.TryWriteBytes(at, code);
            at[2] = jt;
            at[3] = jf;
            BitConverter.TryWriteBytes(at[4..], k);
        }

        return bytes;
    }
}
