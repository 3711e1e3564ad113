"""Staff alerts through each center's WeCom group robot (product rule 23)."""
