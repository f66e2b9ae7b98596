from cfsx.app.cli import app

app(prog_name="cfsx")
