using System.Net;
using HarnessServer.Audit;
using HarnessServer.Identity;
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

    /// <summary>A server whose signing key was rotated: the key it used before is listed as retired.</summary>
    private sealed class RotatedKeyApplication : HarnessApplication
    {
        public AuditSigningKey Retired { get; } = AuditSigningKey.Generate();

        protected override void Configure(IDictionary<string, string?> settings)
        {
            var path = Path.Combine(DataRoot, "retired-audit-key.pub.pem");
            Directory.CreateDirectory(DataRoot);
            File.WriteAllText(path, Retired.PublicKeyPem);
            settings["Harness:Audit:RetiredPublicKeyPaths:0"] = path;
        }
    }

    [Fact]
    public async Task Checkpoints_signed_before_a_key_rotation_still_verify_and_unknown_keys_do_not()
    {
        var app = new RotatedKeyApplication();
        await app.InitializeAsync();
        await using (app)
        {
            var database = app.Service<NpgsqlDataSource>();
            await app.Service<AuditChain>().AppendAsync("rotated", [Entry(1), Entry(2)], default);
            await app.Service<AuditChain>().AppendAsync("forged", [Entry(1), Entry(2)], default);
            // Signed as the server signed before the rotation, and by a key the server never knew.
            await new AuditCheckpoints(database, app.Retired, AuditRetiredKeys.None, TimeProvider.System).CreateAsync("rotated", default);
            using var stranger = AuditSigningKey.Generate();
            await new AuditCheckpoints(database, stranger, AuditRetiredKeys.None, TimeProvider.System).CreateAsync("forged", default);

            using var rotated = app.ClientFor("carol", "rotated", roles: [HarnessRoles.Auditor]);
            var listed = await (await rotated.GetAsync("/v1/audit/checkpoints")).JsonAsync(HttpStatusCode.OK);
            Assert.Equal(app.Retired.KeyId, Assert.Single(listed.GetProperty("retiredKeys").EnumerateArray()).GetProperty("keyId").GetString());
            Assert.NotEqual(app.Retired.KeyId, listed.GetProperty("publicKey").GetProperty("keyId").GetString());
            Assert.Equal(app.Retired.KeyId, Assert.Single(listed.GetProperty("checkpoints").EnumerateArray()).GetProperty("keyId").GetString());
            var verified = await (await rotated.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
            Assert.True(verified.GetProperty("valid").GetBoolean(), verified.ToString());

            using var forged = app.ClientFor("carol", "forged", roles: [HarnessRoles.Auditor]);
            var refused = await (await forged.GetAsync("/v1/audit/verify")).JsonAsync(HttpStatusCode.OK);
            Assert.False(refused.GetProperty("valid").GetBoolean());
            Assert.Equal(2, refused.GetProperty("firstInvalidSeq").GetInt64());
            Assert.Contains(stranger.KeyId, refused.GetProperty("reason").GetString());
        }
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
