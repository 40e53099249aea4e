using HarnessServer.Tenancy;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Design;
using Npgsql;

namespace HarnessServer.Data;

/// <summary>Lets <c>dotnet ef migrations add</c> build the model without starting the server or a database.</summary>
internal sealed class DesignTimeDbContextFactory : IDesignTimeDbContextFactory<HarnessDbContext>
{
    public HarnessDbContext CreateDbContext(string[] args)
    {
        var source = new NpgsqlDataSourceBuilder("Host=localhost;Database=harness_design");
        source.UseVector();
        var options = new DbContextOptionsBuilder<HarnessDbContext>();
        DataExtensions.Configure(options, source.Build());
        return new HarnessDbContext(options.Options, new TenantContext());
    }
}
