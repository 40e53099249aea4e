using HarnessServer.Agents;

namespace HarnessServer.Tests.Agents;

public sealed class FunctionNamesTests
{
    [Theory]
    [InlineData("fs.read", "fs_read")]
    [InlineData("shell.exec", "shell_exec")]
    [InlineData("deploy_service", "deploy_service")]
    [InlineData("MixedCase9", "MixedCase9")]
    public void Plain_names_map_readably_and_back(string tool, string function)
    {
        var names = new FunctionNames([tool, "other.tool"]);

        Assert.Equal(function, names.ToFunction(tool));
        Assert.Equal(tool, names.ToTool(function));
    }

    [Fact]
    public void Colliding_names_stay_distinct_and_the_one_already_valid_keeps_its_name()
    {
        var names = new FunctionNames(["fs.read", "fs_read", "fs-read"]);

        Assert.Equal("fs_read", names.ToFunction("fs_read"));
        var dotted = names.ToFunction("fs.read");
        var dashed = names.ToFunction("fs-read");
        Assert.Matches("^fs_read_[0-9a-f]{8}$", dotted);
        Assert.Matches("^fs_read_[0-9a-f]{8}$", dashed);
        Assert.NotEqual(dotted, dashed);
        Assert.Equal("fs.read", names.ToTool(dotted));
        Assert.Equal("fs-read", names.ToTool(dashed));
    }

    [Fact]
    public void The_mapping_depends_only_on_the_set_of_names()
    {
        var one = new FunctionNames(["a.b", "a_b", "c"]);
        var two = new FunctionNames(["c", "a_b", "a.b"]);

        Assert.Equal(one.ToFunction("a.b"), two.ToFunction("a.b"));
    }

    [Fact]
    public void Long_and_odd_names_fit_what_providers_accept()
    {
        var tool = "team/" + new string('x', 80) + ".run now";
        var names = new FunctionNames([tool]);

        var function = names.ToFunction(tool);
        Assert.Matches("^[A-Za-z0-9_]{1,64}$", function);
        Assert.Equal(tool, names.ToTool(function));
    }

    [Fact]
    public void An_unknown_function_maps_to_no_tool()
    {
        Assert.Null(new FunctionNames(["fs.read"]).ToTool("fs_write"));
    }
}
