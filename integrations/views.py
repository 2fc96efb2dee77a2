from django.http import HttpResponse


def sync_settings(request):
    return HttpResponse("Sync Settings")
