using HarnessServer.Audit;
using HarnessServer.Tests.Infrastructure;
using Npgsql;
using static HarnessServer.Tests.Audit.AuditTestData;

namespace HarnessServer.Tests.Audit;

public sealed class AuditStartupTests
{
    private sealed class NoKeyApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings)
        {
            settings["Harness:Audit:SigningKeyPath"] = Path.Combine(DataRoot, "missing", "key.pem");
            settings["Harness:Audit:GenerateSigningKey"] = "false";
        }
    }

    private sealed class FrequentCheckpointsApplication : HarnessApplication
    {
        protected override void Configure(IDictionary<string, string?> settings) =>
            settings["Harness:Audit:CheckpointInterval"] = "00:00:00.200";
    }

    [Fact]
    public async Task Production_refuses_to_start_without_a_signing_key()
    {
        await using var app = new NoKeyApplication();

        var error = await Assert.ThrowsAnyAsync<Exception>(() => app.InitializeAsync());

        Assert.Contains("Harness:Audit:SigningKeyPath", error.ToString());
        Assert.False(File.Exists(Path.Combine(app.DataRoot, "missing", "key.pem")));
    }

    [Fact]
    public void A_generated_key_is_private_to_its_owner_and_reloads_with_the_same_id()
    {
        var path = Path.Combine(Path.GetTempPath(), $"audit-key-{Guid.NewGuid():N}", "key.pem");
        try
        {
            using var first = AuditSigningKey.Load(path, generateIfMissing: true);
            using var again = AuditSigningKey.Load(path, generateIfMissing: false);

            Assert.Equal(first.KeyId, again.KeyId);
            if (!OperatingSystem.IsWindows())
            {
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
            }

            Assert.True(again.Verify("x"u8, first.Sign("x"u8)));
        }
        finally
        {
            Directory.Delete(Path.GetDirectoryName(path)!, recursive: true);
        }
    }

    [Fact]
    public async Task Checkpoints_are_signed_periodically_for_tenants_whose_head_moved()
    {
        var app = new FrequentCheckpointsApplication();
        await app.InitializeAsync();
        await using (app)
        {
            await app.Service<AuditChain>().AppendAsync("periodic", [Entry(1), Entry(2)], default);

            var deadline = DateTime.UtcNow.AddSeconds(10);
            IReadOnlyList<AuditCheckpoint> checkpoints = [];
            while (checkpoints.Count == 0 && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
                checkpoints = await app.Service<AuditCheckpoints>().ListAsync("periodic", 0, 10, default);
            }

            Assert.Equal(2, Assert.Single(checkpoints).Seq);
            Assert.True(app.Service<AuditCheckpoints>().IsAuthentic(checkpoints[0]));
        }
    }
}
