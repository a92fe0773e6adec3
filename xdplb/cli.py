"""The xdplb command line. Until the daemon and its API exist, it checks that the data plane
compiles and loads on this kernel, and runs the demo."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="xdplb: an XDP layer-4 load balancer", no_args_is_help=True)
console = Console()


@app.command()
def check(
    conn_max: int = typer.Option(1 << 20, help="connection table entries"),
    ring_max: int = typer.Option(65537, help="largest Maglev table of a service (prime)"),
    max_services: int = typer.Option(64, help="virtual services"),
    max_backends: int = typer.Option(4096, help="backends over all services"),
) -> None:
    """Compile and load the balancer with these sizes, and show what the kernel accepted."""
    from xdplb.datapath import Datapath, Sizes

    try:
        sizes = Sizes(conn_max=conn_max, ring_max=ring_max, max_services=max_services, max_backends=max_backends)
    except ValueError as e:
        console.print(f"[red]error:[/] {e}")
        raise typer.Exit(2) from e
    with console.status("compiling and loading bpf/xdplb.c"), Datapath(sizes) as dp:
        console.print(f"[green]xdplb data plane loaded and verified[/]: {dp.instructions} BPF instructions")
        table = Table()
        table.add_column("map")
        table.add_column("entries", justify="right")
        for name, m in dp.maps.items():
            table.add_row(name, str(m.max_entries))
        console.print(table)


@app.command()
def demo() -> None:
    """The guided demo (the same as `make demo`)."""
    from xdplb.demo import main

    main()


if __name__ == "__main__":
    app()
