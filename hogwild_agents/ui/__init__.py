"""What people look at: the command line, the live view, notebook display and the HTML trace."""
