"""Trading rules shared by the services that signal with them and the bots that trade them."""
